"""bench/read_unseen.py checks each answer against a sandboxed run of its own snippet: a printed value the run
contradicts is found, a true one is not, and the last line counts the answers with no claim found."""

import importlib.util
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("read_unseen", ROOT / "bench" / "read_unseen.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


@dataclass
class _Answer:
    text: str
    raw_text: str = ""
    dropped: int = 0
    first_text: str = ""
    retried: int = 0


class _Engine:  # a stand-in for the model: planted answers, the checks and the runs are the real ones
    def generate(self, requests):
        planted = {0: "`count_vowels` counts the vowels, so it prints 5.",  # the run prints 3
                   4: "`power` calls itself until `exp` is 0, so it prints 32."}  # true
        answers = [_Answer(planted.get(i, "It explains the code, capisce?")) for i in range(len(requests))]
        answers[1] = _Answer("`bump` adds one to `n`.", raw_text="`bump` adds one to `n`. `bump` is recursive.",
                             dropped=1)  # a sentence the post-check dropped
        answers[2] = _Answer("`merge` builds a new dict.", first_text="`merge` is recursive.",
                             retried=1)  # a retry replaced the first answer, whose sentence the check drops
        return answers

    def close(self):
        pass


def test_printed_values_are_checked_against_a_run_of_the_snippet(monkeypatch, capsys):
    bench = _bench()
    monkeypatch.setattr("mafioso.worker.engines.load_engine", lambda *args, **kwargs: _Engine())
    assert bench.main(["--adapter", "none"]) == 0
    out = capsys.readouterr().out
    blocks = out.split("=== ")[1:]
    assert "claims the checks find: false output: 5" in blocks[0]
    assert "claims the checks find: none" in blocks[4]
    assert "--- dropped (false concept: recursive): `bump` is recursive." in blocks[1]
    assert "--- dropped" not in blocks[0]
    assert "0 sentences dropped, decoded again 1x; claims the checks find: none" in blocks[2]
    assert "--- dropped (false concept: recursive): `merge` is recursive." in blocks[2]
    n = len(bench.UNSEEN)
    assert f"answers with no claim found: {n - 1} of {n} served, {n - 3} before the post-check" in out
