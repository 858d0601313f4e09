"""bench/output_quiz.py: each snippet that prints is asked what it prints, and the values its answer names are held
against a real run: right, wrong (a planted false value) or vague (no value named)."""

import json
from dataclasses import dataclass

from tests.bench import load


def _bench():
    return load("output_quiz")


def test_the_verdicts():
    bench = _bench()
    assert bench.verdict("So it prints 5, capisce?", "5\n") == ("right", ["5"])
    assert bench.verdict("It prints 'Don Vito' and then 6.", "Don Vito\n5\n") == ("wrong", ["Don Vito", "6"])
    assert bench.verdict("It prints the sum of the two, pal.", "5\n") == ("vague", [])
    assert bench.verdict("It never prints 7.", "5\n") == ("vague", [])  # a denial names nothing


@dataclass
class _Answer:
    text: str


def test_each_snippet_that_prints_is_asked_and_scored(monkeypatch, tmp_path, capsys):
    bench = _bench()
    rows = {"a": {"code": "print(2 + 3)"}, "b": {"code": "x = 1"},  # b prints nothing: not asked
            "c": {"code": "print('Vito')\nraise SystemExit(1)"}, "d": {"code": "print([1, 2])"}}
    (tmp_path / "v.json").write_text(json.dumps(rows))
    asked = []

    class Engine:
        def generate(self, requests):
            asked.extend(requests)
            planted = {"print(2 + 3)": "It prints 6, pal.", "print([1, 2])": "So it prints [1, 2], capisce?"}
            return [_Answer(planted[code]) for code, _ in requests]

        def close(self):
            pass

    monkeypatch.setattr("mafioso.worker.engines.load_engine", lambda *args, **kwargs: Engine())
    out = tmp_path / "quiz.jsonl"
    assert bench.main(["--data", str(tmp_path / "v.json"), "--no-unseen", "--adapter", "none", "--out", str(out)]) == 0
    assert [code for code, _ in asked] == ["print(2 + 3)", "print([1, 2])"]  # c ends with an exception
    assert {request for _, request in asked} == {bench.REQUEST}
    text = capsys.readouterr().out
    assert "data     asked    2  right    1  wrong    1  vague    0  right of those naming values 0.50" in text
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(line["verdict"], line["values"]) for line in lines] == [("wrong", ["6"]), ("right", ["[1, 2]"])]


def test_the_unseen_sixty_are_read_from_read_unseen():
    bench = _bench()
    codes = bench.unseen_snippets()
    assert len(codes) == 60 and codes[0].startswith("def count_vowels") and codes[40].startswith("def monogram")
