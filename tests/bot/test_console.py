"""``mafioso explain`` end to end through mafioso.cli.main: a file, stdin, refusals, an adapter, a worker URL."""

import asyncio
import io
import sys

import pytest

from mafioso import prompts
from mafioso.worker.service import Worker
from mafioso.cli import main
from tests.worker.helpers import FakeEngine, serving, worker_config

pytestmark = pytest.mark.usefixtures("clean_env")


def explain(*args: str) -> int:
    return main(["explain", *args])


def test_explains_a_file(tiny_model_dir, tmp_path, capsys):
    script = tmp_path / "script.py"
    script.write_text("def add(a, b):\n    return a + b\n")
    assert explain(str(script), "--base-model", str(tiny_model_dir), "--adapter", "none",
                   "--max-new-tokens", "4") == 0
    out, err = capsys.readouterr()
    assert out.endswith("\n")
    answer_id = err.split("mafioso feedback rate ")[1].split()[0]  # the id goes to stderr, the answer alone out
    assert answer_id not in out
    assert main(["feedback", "rate", answer_id, "up"]) == 0
    assert main(["feedback", "rate", "no-such-answer", "down"]) == 1
    assert "mafioso: loading the model…\n" in err  # one line on stderr while it loads (issue 21)


def test_explains_stdin_with_an_adapter(tiny_adapter_dir, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("MAFIOSO_CACHE", str(tmp_path))  # no merged model kept yet
    for note in ("loading the model (first run converts it once)…", "loading the cached merged model…"):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"print('ciao')\n")))
        assert explain("-", "--adapter", str(tiny_adapter_dir), "--max-new-tokens", "4", "--request", "why?") == 0
        assert f"mafioso: {note}\n" in capsys.readouterr().err


def test_refusals_in_character_with_status_1(tmp_path, capsys, monkeypatch):
    empty = tmp_path / "empty.py"
    empty.write_text("\n\n")
    binary = tmp_path / "blob.py"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff")
    # The model is never loaded for these: the base below does not exist.
    assert explain(str(empty), "--base-model", "/nonexistent") == 1
    assert "empty envelope" in capsys.readouterr().out
    assert explain(str(binary), "--base-model", "/nonexistent") == 1
    assert "bag of bytes" in capsys.readouterr().out
    assert explain(str(tmp_path / "missing.py")) == 2
    assert "file not found" in capsys.readouterr().err
    monkeypatch.setenv("MAFIOSO_MAX_INPUT_CHARS", "10")
    big = tmp_path / "big.py"
    big.write_text("x = 12345678901\n")
    assert explain(str(big)) == 1
    assert "ledger" in capsys.readouterr().out


def test_show_prompt_prints_the_whole_prompt_without_loading_the_model(tmp_path, capsys):
    script = tmp_path / "s.py"
    script.write_text("def fact(n):\n    return 1 if n < 2 else n * fact(n - 1)\n\nprint('Done')\n")
    # The base below does not exist: loading it would fail.
    assert explain(str(script), "--show-prompt", "--request", "why?", "--base-model", "/nonexistent") == 0
    out = capsys.readouterr().out
    assert out == prompts.render_prompt(script.read_text(), "why?")
    assert prompts.instruction() in out and "Request: why?" in out and "def fact(n):" in out
    assert "### FACTS:\n- def fact(n): recurses;" in out and "prints 'Done'" in out
    assert out.endswith("### RESPONSE:\n")


def test_explains_through_a_running_worker(capsys, tmp_path, monkeypatch):
    cfg = worker_config(api_key="k")
    script = tmp_path / "s.py"
    script.write_text("x = 1\n")
    monkeypatch.setenv("MAFIOSO_API_KEY", "k")

    async def run():
        async with serving(Worker(FakeEngine(), cfg), cfg) as url:
            return await asyncio.to_thread(explain, str(script), "--worker-url", url)

    assert asyncio.run(run()) == 0
    assert capsys.readouterr().out.strip() == "explained x = 1"


def test_an_answer_from_a_worker_is_rated_on_that_worker(capsys, tmp_path):
    from mafioso.core.feedback import FeedbackStore

    cfg = worker_config()
    script = tmp_path / "s.py"
    script.write_text("x = 1\n")
    store = FeedbackStore.open(tmp_path / "worker.db")

    async def run():
        async with serving(Worker(FakeEngine(), cfg, feedback=store), cfg) as url:
            assert await asyncio.to_thread(explain, str(script), "--worker-url", url) == 0
            command = capsys.readouterr().err.split("rate it: ")[1].split()
            assert command[:3] == ["mafioso", "feedback", "rate"] and command[-2:] == ["--worker-url", url]
            answer_id = command[3]
            rated = await asyncio.to_thread(main, ["feedback", "rate", answer_id, "down", "--worker-url", url])
            unknown = await asyncio.to_thread(main, ["feedback", "rate", "nope", "up", "--worker-url", url])
            return rated, unknown

    assert asyncio.run(run()) == (0, 1)
    [row] = store.rated_answers()
    assert (row["downs"], row["code"].strip()) == (1, "x = 1")
    assert explain(str(script), "--worker-url", "http://127.0.0.1:9") == 1
    assert "line's dead" in capsys.readouterr().out


def test_prints_the_answer_as_it_is_written_through_a_worker_and_whole_with_no_stream(capsys, tmp_path,
                                                                                         monkeypatch):
    """The worker streams sentence by sentence: stdout grows while the answer is written (seen by a stdout
    that records each write with the time), and ends as the whole answer either way."""
    import sys
    import time

    cfg = worker_config()
    code = "x = 1\ny = 2\nz = 3\nprint(x + y + z)\n"
    script = tmp_path / "s.py"
    script.write_text(code)
    writes = []

    class Recording:
        def write(self, text):
            writes.append((time.monotonic(), text))

        def flush(self):
            pass

    async def run(*flags):
        async with serving(Worker(FakeEngine(tokens=8, token_delay=0.1), cfg), cfg) as url:
            return await asyncio.to_thread(explain, str(script), "--worker-url", url, *flags)

    monkeypatch.setattr(sys, "stdout", Recording())
    assert asyncio.run(run()) == 0
    pieces = [(t, text) for t, text in writes if text.strip()]
    assert "".join(text for _, text in writes) == f"explained {code}\n"
    assert len(pieces) > 2 and pieces[-1][0] - pieces[0][0] > 0.2  # printed over time, not at once
    writes.clear()
    assert asyncio.run(run("--no-stream")) == 0
    assert [text for _, text in writes if text.strip()] == [f"explained {code}"]


def test_an_answer_the_final_check_changed_is_printed_whole_on_a_line_of_its_own(capsys):
    """Text already printed cannot be taken back: stdout ends that line and prints the whole final answer, stderr
    says why."""
    from mafioso.bot.console import _print_as_written
    from mafioso.core.explanation import Explanation
    from mafioso.worker.service import StreamEvent

    final = Explanation("That one I keep off the record, pal.", tokens=9, latency_s=0.1, finished=True)

    class Replacing:
        async def stream(self, code, request):
            async def events():
                yield StreamEvent("It prints hi. ")
                yield StreamEvent(final.text, final, replaced=True)
            return events()

    assert asyncio.run(_print_as_written(Replacing(), "print('hi')", None, stream=True)) is final
    out, err = capsys.readouterr()
    assert out == "It prints hi. \nThat one I keep off the record, pal.\n"
    assert "the final check changed the answer" in err
