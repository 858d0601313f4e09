"""The input guard, the output post-check and the chat-message split: pure functions, no model."""

import pytest

from mafioso.core import guard
from mafioso.worker.http_api import chat_code, split_fence
from mafioso.prompts.lines import line
from mafioso.core.postcheck import scrub
from mafioso.core.errors import InputRejected


@pytest.mark.parametrize("code, reason", [
    ("", "empty"),
    ("  \n\t ", "empty"),
    (b"", "empty"),
    ("x = 1\n" * 2000, "too_large"),
    (b"\xff\xfe\x00binary", "binary"),
    ("print(1)\x00", "binary"),
    ("\x01\x02\x03\x04 ok", "binary"),
    ("print('\ud800')", "binary"),  # a lone surrogate: no tokenizer can encode it (was a 500, issue 19)
])
def test_refusals_name_the_reason_in_character(code, reason):
    with pytest.raises(InputRejected) as caught:
        guard.check(code, max_chars=6000)
    assert caught.value.reason == reason
    assert str(caught.value) == line(reason)


def test_accepts_code_and_decodes_utf8_bytes():
    assert guard.check("print('ciao')\n\tpass", max_chars=100) == "print('ciao')\n\tpass"
    assert guard.check("print('caffè')".encode(), max_chars=100) == "print('caffè')"


def test_prompt_must_leave_room_for_the_answer():
    count = lambda code, request: len(code)  # noqa: E731
    assert guard.check("x" * 50, max_chars=6000, prompt_tokens=count, max_prompt_tokens=50)
    with pytest.raises(InputRejected, match="ledger") as caught:
        guard.check("x" * 51, max_chars=6000, prompt_tokens=count, max_prompt_tokens=50)
    assert caught.value.reason == "too_large"


def test_request_counts_towards_the_limit():
    with pytest.raises(InputRejected):
        guard.check("x = 1", "why " * 10, max_chars=20)


def test_scrub_leaves_prose_alone():
    assert scrub("`total` holds the sum, pal. Capisce?") == ("`total` holds the sum, pal. Capisce?", False)


def test_scrub_removes_fences_code_lines_and_code_spans():
    text = "It adds, pal.\n```python\ndef f():\n    return 1\n```\nreturn x\nIt calls `total = sum(xs)` once."
    cleaned, leaked = scrub(text)
    assert leaked
    assert "def f" not in cleaned and "return" not in cleaned and "sum(xs)" not in cleaned
    assert cleaned.startswith("It adds, pal.")


def test_scrub_of_nothing_but_code_says_something():
    assert scrub("```\nimport os\n```") == (line("off_the_record"), True)


@pytest.mark.parametrize("message, code, ask", [
    ("print(1)", "print(1)", None),
    ("what does this do?\n```python\nprint(1)\n```", "print(1)", "what does this do?"),
    ("```\nx = 1\n```", "x = 1", None),
    ("explain\n```py\nx = 1", "x = 1", "explain"),  # a fence left open runs to the end (prompts/fences.py)
    ("```x = 1``` why?", "x = 1", "why?"),
    ("compare\n```\na = 1\n```\nwith\n~~~py\nb = 2\n~~~\nplease", "a = 1\n\nb = 2", "compare with please"),
    ("use ``` to fence code", "use ``` to fence code", None),  # no line after an unclosed fence: no block
])
def test_chat_message_split(message, code, ask):
    assert split_fence(message) == (code, ask)


FENCED = "what does this do?\n```python\ndef pop(self):\n    return self.items.pop()\n```"


@pytest.mark.parametrize("messages, code, ask", [
    ([FENCED, "is there a bug?"], "def pop(self):\n    return self.items.pop()", "is there a bug?"),  # a follow-up
    ([FENCED, "```\nx = 1\n```", "and  now\nthis one?"], "x = 1", "and now this one?"),  # the latest fenced code
    ([FENCED, "x = 1"], "x = 1", None),  # parses as Python: new code, pasted without a fence
    ([FENCED, "explain"], "def pop(self):\n    return self.items.pop()", "explain"),  # a word, not a name
    ([FENCED, "```\ny = 2\n```"], "y = 2", None),  # new fenced code
    (["x = 1", "what does it do?"], "x = 1", "what does it do?"),  # earlier code without a fence
    ([FENCED, "is there a bug?", "and now?"], "def pop(self):\n    return self.items.pop()", "and now?"),
    (["plain text, no code here", "is there a bug?"], "is there a bug?", None),  # no earlier code: as before
    (["is there a bug?"], "is there a bug?", None),
])
def test_a_follow_up_question_asks_about_the_latest_fenced_code(messages, code, ask):
    assert chat_code(messages) == (code, ask)


def test_chat_message_split_is_linear():
    """Issue 19: a regex split backtracked quadratically (32,000 backticks: 1.4 s of the event loop)."""
    import time

    started = time.perf_counter()
    for message in ("`" * 100_000, "```" * 33_000 + "\n", "~~~\n" + "`" * 100_000, "```\n" * 30_000):
        split_fence(message)
    assert time.perf_counter() - started < 1.0  # the quadratic split took 14 s on a full-size body


@pytest.mark.parametrize("text, expected", [
    ("It keeps `idx`max`x = y + 1`fees` here.", "It keeps `idx`max that bit of code fees` here."),
    ("It calls `total = sum(xs)`, pal.", "It calls that bit of code, pal."),  # no word beside it: no space added
])
def test_a_scrubbed_span_never_glues_the_words_beside_it(text, expected):
    assert scrub(text) == (expected, True)


def test_a_sentence_of_code_in_a_one_line_answer_takes_only_itself():
    """A whole answer on one line; one sentence has a stray fence mark (read in the shipped Gemma's answer to
    `print("hi")`, which was served as the off-the-record line before)."""
    text = ("It prints 'hi' once, kid. The `print` call takes the string `hi`. Then it builds the list ````list`, "
            "`a` `b`. Nobody runs this restaurant, capisce?")
    assert scrub(text) == ("It prints 'hi' once, kid. The `print` call takes the string `hi`. Nobody runs this "
                           "restaurant, capisce?", True)


@pytest.mark.parametrize("line", [
    'msg = "Done. Next one"',  # a code line a sentence split cuts in two: dropped whole
    "print('Ready. Set.') and more",
])
def test_a_line_of_code_with_a_full_stop_inside_is_still_dropped_whole(line):
    assert scrub(f"It greets, pal.\n{line}\nCapisce?") == ("It greets, pal.\nCapisce?", True)
