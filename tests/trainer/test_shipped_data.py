"""The dataset the project ships stays valid, big enough, varied and covering every topic."""

from pathlib import Path

from mafioso.trainer.dataset import duplicate_problems, load_samples
from mafioso.trainer.lint import TOPICS, lint_report

DATA = Path(__file__).resolve().parents[2] / "data"


def test_shipped_dataset_passes_lint_with_full_coverage():
    train = load_samples([DATA / "train.json"])
    validation = load_samples([DATA / "validation.json"])
    assert len(train) >= 400 and len(validation) >= 80
    assert not duplicate_problems(validation, against=train)  # validation never repeats training code
    report = lint_report(train + validation)
    assert report.errors == []
    assert all(report.coverage[topic] > 0 for topic in TOPICS), report.coverage


def test_adding_persona_examples_and_retraining_flow(tiny_model_dir, tmp_path):
    """The data card's flow: write mine.jsonl, check it with the shipped data, train on both."""
    import json

    from mafioso.cli import main

    mine = tmp_path / "mine.jsonl"
    rows = [{"prompt": "what's this?", "code": "print(len('vito'))",
             "mafia_explanation": "It counts the letters in 'vito' with `len` and prints 4. Four letters, capisce?"},
            {"prompt": "and this?", "code": "names = {'al', 'vito'}\nprint('al' in names)",
             "mafia_explanation": "It builds the set `names` and checks membership, so it prints True, pal."}]
    mine.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert main(["data", "check", str(DATA / "train.json"), str(mine)]) == 0
    out = tmp_path / "my-adapter"
    assert main(["train", "--base-model", str(tiny_model_dir), "--data", str(DATA / "train.json"),
                 "--data", str(mine), "--validation", str(DATA / "validation.json"), "--output", str(out),
                 "--epochs", "0.05", "--max-length", "640"]) == 0
    info = json.loads((out / "mafioso.json").read_text())
    # the tiny test tokenizer spends many tokens a word: rows whose prompt alone is over 640 are left out
    assert 0 < info["counts"]["train"] <= len(load_samples([DATA / "train.json"])) + 2
    assert 0 < info["counts"]["validation"] <= len(load_samples([DATA / "validation.json"]))
