"""bench/concise_references.py: a reference keeps its first sentences and its last, every other field as it was."""

import json

from tests.bench import load

concise_references = load("concise_references")


def test_the_first_sentences_and_the_last_are_kept():
    text = "`f` adds one, pal. It loops over `xs`. It prints 3. It returns None. Capisce?"
    assert concise_references.concise(text) == "`f` adds one, pal. It loops over `xs`. Capisce?"
    assert concise_references.concise(text, first=3) == "`f` adds one, pal. It loops over `xs`. It prints 3. Capisce?"
    assert concise_references.concise("One, pal. Two. Capisce?") == "One, pal. Two. Capisce?"  # nothing to cut


def test_a_dataset_is_cut_row_by_row(tmp_path, capsys):
    rows = {"a": {"prompt": "p", "code": "x = 1\nprint(x)",
                  "mafia_explanation": "One, pal. Two. Three. Four, capisce?"},
            "b": {"prompt": "q", "code": "y = 2", "mafia_explanation": "Short, pal."}}
    (tmp_path / "in.json").write_text(json.dumps(rows))
    assert concise_references.main([str(tmp_path / "in.json"), str(tmp_path / "out.json")]) == 0
    out = json.loads((tmp_path / "out.json").read_text())
    assert out["a"] == {**rows["a"], "mafia_explanation": "One, pal. Two. Four, capisce?"} and out["b"] == rows["b"]
    assert "2 rows, 1 cut; sentences a reference 2.5 -> 2.0" in capsys.readouterr().out
