"""Code extraction and message splitting shared by the chat adapters."""

import contextlib
import re
import signal

import pytest

from mafioso.bot.extract import Paste, decode_code_file, error_line, extract, is_code_file, python_blocks, split_text
from mafioso.prompts.fences import fenced_blocks
from mafioso.prompts.lines import line
from mafioso.core.errors import InputRejected, RequestError, WorkerBusy, WorkerTimeout, WorkerUnavailable


def extract_code(text: str, **options) -> str:
    return extract(text, **options)[0]


@pytest.mark.parametrize("message", [
    "look at this:\n```\nprint(1)\n```",
    "```python\nprint(1)\n```",
    "```py\nprint(1)\n```",
    "```python3\nprint(1)\n```",
    "~~~\nprint(1)\n~~~",
    "~~~python\nprint(1)\n~~~ thanks",
    "```print(1)```",
])
def test_fenced_block_variants_give_the_code_without_the_fence(message):
    assert extract_code(message) == "print(1)"
    assert extract_code(message, fence_required=True) == "print(1)"


def test_several_blocks_are_joined_in_order():
    message = "first\n```py\na = 1\n```\nthen\n```\nb = a + 1\n```"
    assert extract_code(message) == "a = 1\n\nb = a + 1"


def test_indentation_inside_a_block_survives():
    code = "def f(x):\n    if x:\n        return 1"
    assert extract_code(f"```python\n{code}\n```") == code


def test_without_a_fence_the_text_is_the_code_unless_a_fence_is_required():
    assert extract_code("  for i in range(3): print(i)  ") == "for i in range(3): print(i)"
    assert extract_code("`x = 1`") == "x = 1"
    assert extract_code("hello everyone", fence_required=True) == ""


def test_other_languages_count_only_when_explicitly_asked():
    message = "```js\nconsole.log(1)\n```"
    assert python_blocks(message) == []
    assert extract_code(message, fence_required=True) == ""
    assert extract_code(message) == "console.log(1)"
    mixed = "```bash\npip install x\n```\n```python\nimport x\n```"
    assert extract_code(mixed) == "import x"
    assert [b.lang for b in fenced_blocks(mixed)] == ["bash", "python"]


@pytest.mark.parametrize("message, request_", [
    ("is there a bug?\n```py\nprint(1)\n```", "is there a bug?"),
    ("why\n```\nprint(1)\n```\ndoes it  print\none?", "why does it print one?"),
    ("```python\nprint(1)\n```", None),
    ("print(1)", None),  # no fence: all of it is the code
    ("`print(1)`", None),
])
def test_the_text_around_the_code_is_the_question(message, request_):
    assert extract(message) == ("print(1)", request_)


def test_beside_a_file_a_text_with_no_block_is_all_question():
    assert Paste.of("why does  this crash?", ["x = 1"]) == Paste("x = 1", "why does this crash?")
    assert Paste.of("and this\n```\ny = 2\n```", ["x = 1"]) == Paste("y = 2\n\nx = 1", "and this")
    assert Paste.of("", ["x = 1"]) == Paste("x = 1", None)
    assert Paste.of("hello", [], fence_required=True) == Paste("", None)  # listening: plain text is no code


def test_code_files():
    assert is_code_file("mob.py") and is_code_file("MOB.PY") and is_code_file("snippet", "python")
    assert not is_code_file("notes.txt") and not is_code_file("image.png", "png")
    assert decode_code_file("x = 'é'\n".encode()) == "x = 'é'\n"
    assert decode_code_file(b"\xef\xbb\xbfx = 1") == "x = 1"
    for binary in (b"\x89PNG\x00\x01", b"\xff\xfe\xfa", b"x = 1\x00\x01"):
        with pytest.raises(InputRejected) as caught:
            decode_code_file(binary)
        assert caught.value.reason == "binary"
        assert error_line(caught.value, 6000) == line("binary")  # the guard's refusal, not "show me some Python"


def _balanced(chunk: str) -> bool:
    """Every backtick run in the chunk is closed by an equal run."""
    runs = re.findall(r"`+", chunk)
    return all(runs.count(r) % 2 == 0 for r in set(runs))


def test_split_keeps_chunks_under_the_limit_on_sentence_boundaries():
    sentence = "Listen up, pal: `add(a, b)` returns the sum of `a` and `b`. "
    text = sentence * 100
    chunks = split_text(text, 2000)
    assert len(chunks) > 1
    assert all(len(c) <= 2000 for c in chunks)
    assert all(c.endswith(".") for c in chunks)  # cut after a sentence
    assert all(_balanced(c) for c in chunks)
    assert " ".join(chunks) == text.strip()


def test_split_never_cuts_inside_a_backtick_span():
    text = ("Word " * 30) + "`" + "a.b. c! d " * 10 + "` tail. " + ("More words. " * 10)
    for chunk in split_text(text, 120):
        assert len(chunk) <= 120
        assert _balanced(chunk), chunk


def test_a_fenced_block_longer_than_the_limit_is_closed_and_reopened():
    code = "".join(f"x{i} = {i}\n" for i in range(200))
    text = f"Here it is:\n```python\n{code}```\nCapisce?"
    chunks = split_text(text, 300)
    assert all(len(c) <= 300 for c in chunks)
    assert all(_balanced(c) for c in chunks)
    rebuilt = "\n".join(line for c in chunks for line in c.splitlines() if line.startswith("x"))
    assert rebuilt == code.strip()  # no line lost or cut


def test_short_text_is_one_chunk_and_empty_text_none():
    assert split_text("  Capisce?  ", 2000) == ["Capisce?"]
    assert split_text("", 2000) == []
    assert split_text("a" * 45, 20) == ["a" * 20, "a" * 20, "a" * 5]


@pytest.mark.parametrize("persona", ["mafioso", "noir"])
def test_in_character_lines_never_show_internals(persona):
    secret = "Traceback: CUDA OOM at /srv/model token=xoxb-123"
    expected = [("busy", WorkerBusy(secret)), ("timeout", WorkerTimeout(secret)),
                ("worker_down", WorkerUnavailable(secret)), ("failed", RequestError(secret)),
                ("binary", InputRejected("binary", secret)), ("no_code", InputRejected("empty", secret))]
    for situation, exc in expected:
        said = error_line(exc, 6000, persona)
        assert secret not in said and said == line(situation, persona)
    too_large = error_line(InputRejected("too_large", secret), 6000, persona)
    assert too_large == line("code_too_long", persona, limit=6000) and "6000" in too_large and secret not in too_large
    assert "7 seconds" in line("cooldown", persona, seconds=7.2)
    assert "1 seconds" in line("cooldown", persona, seconds=0.1)


@contextlib.contextmanager
def _watchdog(seconds: int):
    """Fail instead of hanging: the old parsers took minutes to forever on these inputs (issue 19)."""
    def expire(*_):
        raise TimeoutError(f"still running after {seconds} s: not linear")
    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("text", ["`" * 50_000, "~" * 50_000, "```" + "`a`" * 20_000, "```\n" * 20_000,
                                  "`x` and `` y " * 5_000])
def test_backtick_runs_parse_in_linear_time(text):
    with _watchdog(10):
        fenced_blocks(text)
        python_blocks(text)
        extract_code(text)
        chunks = split_text(text, 2000)
    assert all(len(chunk) <= 2000 for chunk in chunks)


def test_a_backtick_run_longer_than_the_limit_is_cut_like_a_word():
    with _watchdog(10):  # looped forever: the span was re-closed and re-opened without getting shorter
        chunks = split_text("`" * 2100, 2000)
    assert "".join(chunks) == "`" * 2100 and all(len(chunk) <= 2000 for chunk in chunks)


def test_a_fence_left_open_is_code_when_asked_but_not_when_listening():
    assert extract_code("@Mafioso look\n```python\nx = 1") == "x = 1"
    assert extract_code("look\n```python\nx = 1", fence_required=True) == ""
    assert extract_code("look\n```python\nx = 1\n```", fence_required=True) == "x = 1"
    assert python_blocks("```\nx = 1", closed=True) == [] and python_blocks("```\nx = 1")[0].code == "x = 1"
