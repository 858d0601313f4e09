"""bench/read_unseen.py checks each answer against a sandboxed run of its own snippet: a printed value the run
contradicts is found, a true one is not, and the last line counts the answers with no claim found."""

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.bench import load

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    return load("read_unseen")


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


@pytest.mark.parametrize(("which", "first", "some"), [
    (2, "reads_same_backwards", {"reads_same_backwards", "Strongbox", "strongbox", "weekly_cut"}),
    (3, "monogram", {"monogram", "Accountant", "turnstile", "halve_until_odd"}),
])
def test_the_later_twenties_are_answered_and_their_names_are_in_no_data_row(monkeypatch, capsys, which, first, some):
    import ast
    import json
    import re

    bench = _bench()
    snippets = {2: bench.UNSEEN_SECOND, 3: bench.UNSEEN_THIRD}[which]
    monkeypatch.setattr("mafioso.worker.engines.load_engine", lambda *args, **kwargs: _Engine())
    assert bench.main(["--adapter", "none", "--set", str(which)]) == 0
    out = capsys.readouterr().out
    assert out.count("=== ") == len(snippets) == 20
    assert first in out.split("=== ")[1]
    # the snippets' own names (their defs, classes and top-level variables) stay out of the data's code
    names = set()
    for code, _ in snippets:
        tree = ast.parse(code)
        names |= {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
        names |= {target.id for node in tree.body if isinstance(node, ast.Assign) for target in node.targets}
    assert some <= names
    names -= {"__init__", "__repr__"}
    codes = [row["code"] for split in ("train", "validation")
             for row in json.loads((ROOT / "data" / f"{split}.json").read_text()).values()]
    assert {name for name in names if any(re.search(rf"\b{name}\b", code) for code in codes)} == set()


def test_the_later_twentys_true_answers_pass_the_checks_against_real_runs():
    """Each snippet's note of what a true answer says is itself held to its sandboxed run: a wrong printed value
    in a note ("prints [('i', 3), ...]" of a word with two i's) would be found."""
    from mafioso.trainer.grounding import unsupported_claims
    from mafioso.trainer.sandbox import SnippetRunner

    runner = SnippetRunner()
    wrong = {}
    for which, snippets in ((2, _bench().UNSEEN_SECOND), (3, _bench().UNSEEN_THIRD)):
        for number, (code, truth) in enumerate(snippets, 1):
            run = runner.run(code)
            if claims := unsupported_claims(code, truth, run.output, run.raised):
                wrong[(which, number)] = claims
    assert wrong == {}
    for number, planted in ((4, ("('i', 2)", "('i', 3)")), (5, ("prints 6", "prints 9"))):
        code, truth = _bench().UNSEEN_SECOND[number - 1]
        run = runner.run(code)
        assert unsupported_claims(code, truth.replace(*planted), run.output, run.raised), number


def test_verdicts_are_shown_by_answer_text_and_counted(monkeypatch, capsys, tmp_path):
    """An answer read before (same set, snippet and text, whitespace aside) shows its verdict; others say so."""
    import json

    bench = _bench()
    monkeypatch.setattr("mafioso.worker.engines.load_engine", lambda *args, **kwargs: _Engine())
    verdicts = {bench.answer_key(1, 1, "`count_vowels`  counts the vowels,\nso it prints 5."): {
                    "set": 1, "number": 1, "right": False, "why": "'prints 5': 3", "read": "2026-12-06",
                    "answered_by": "a planted engine"},
                bench.answer_key(1, 5, "`power` calls itself until `exp` is 0, so it prints 32."): {
                    "set": 1, "number": 5, "right": True, "read": "2026-12-06", "answered_by": "a planted engine"},
                bench.answer_key(2, 5, "`power` calls itself until `exp` is 0, so it prints 32."): {  # another set
                    "set": 2, "number": 5, "right": False, "read": "2026-12-06", "answered_by": "a planted engine"}}
    (tmp_path / "v.json").write_text(json.dumps(verdicts))
    assert bench.main(["--adapter", "none", "--verdicts", str(tmp_path / "v.json")]) == 0
    blocks = capsys.readouterr().out.split("=== ")[1:]
    assert "--- read by hand 2026-12-06: wrong: 'prints 5': 3 (key " in blocks[0]
    assert "--- read by hand 2026-12-06: right (key " in blocks[4]
    assert "--- not read by hand yet (key " in blocks[1]
    n = len(bench.UNSEEN)
    assert f"read by hand: 1 right of 2 read before, {n - 2} not read yet (v.json)" in blocks[-1]
    assert bench.main(["--adapter", "none", "--verdicts", str(tmp_path / "v.json"), "--unread"]) == 0
    shown = capsys.readouterr().out
    assert shown.count("=== ") == n - 2 and "=== 1\n" not in shown and "=== 5\n" not in shown and "=== 2\n" in shown
    assert f"read by hand: 1 right of 2 read before, {n - 2} not read yet (v.json)" in shown


def test_the_kept_verdicts_are_well_formed():
    bench = _bench()
    verdicts = bench.load_verdicts(bench.VERDICTS)
    assert verdicts, "bench/unseen_verdicts.json holds the readings of docs/BENCHMARKS.md"
    for key, verdict in verdicts.items():
        assert len(key) == 16 and set(verdict) <= {"set", "number", "right", "why", "read", "answered_by", "text"}
        assert key == bench.answer_key(verdict["set"], verdict["number"], verdict["text"]), f"{key}: not its text's"
        assert verdict["set"] in (1, 2, 3) and 1 <= verdict["number"] <= 20 and isinstance(verdict["right"], bool)
        assert verdict["right"] or verdict.get("why"), f"{key}: a wrong answer says why"
        assert verdict["answered_by"] and verdict["read"]


def test_the_retry_rounds_reach_the_engine(monkeypatch, capsys):
    bench = _bench()
    seen = []

    def load_engine(cfg, gen, **kwargs):
        seen.append(gen.retry_unsupported)
        return _Engine()

    monkeypatch.setattr("mafioso.worker.engines.load_engine", load_engine)
    assert bench.main(["--adapter", "none", "--retry-unsupported", "0"]) == 0
    assert bench.main(["--adapter", "none"]) == 0
    from mafioso.core.config import GenerationConfig

    assert seen == [0, GenerationConfig.retry_unsupported]
