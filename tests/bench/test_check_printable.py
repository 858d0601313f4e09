"""bench/check_printable.py: static printed-value flags held against real runs of the snippets."""

import json
from pathlib import Path

from tests.bench import load

ROOT = Path(__file__).resolve().parents[2]
FIZZBUZZ = (ROOT / "examples" / "fizzbuzz.py").read_text()


def _bench():
    return load("check_printable")


def _dataset(tmp_path, answer: str) -> str:
    path = tmp_path / "rows.json"
    path.write_text(json.dumps({"fb-1": {"prompt": "Explain this code.", "code": FIZZBUZZ, "mafia_explanation": answer}}))
    return str(path)


def test_a_flag_the_run_confirms_passes(tmp_path, capsys):
    bench = _bench()
    assert bench.main([_dataset(tmp_path, "It prints 'Fizz', then the last line prints 'None', capisce?")]) == 0
    out = capsys.readouterr().out
    assert "[confirmed by the run] 'None'" in out
    assert json.loads(out.strip().splitlines()[-1]) == {"texts": 1, "codes_in_sight": 1, "texts_flagged": 1,
                                                        "contradicted": 0}


def test_a_flag_the_run_contradicts_fails_the_check(tmp_path, monkeypatch, capsys):
    bench = _bench()
    planted = [{"kind": "false output", "claim": "Fizz", "text": "It prints 'Fizz'."}]  # a static check gone wrong
    monkeypatch.setattr(bench, "false_prints", lambda code, answer: planted)
    assert bench.main([_dataset(tmp_path, "It prints 'Fizz'.")]) == 1
    assert "[CONTRADICTED] 'Fizz'" in capsys.readouterr().out
