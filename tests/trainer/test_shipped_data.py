"""The dataset the project ships stays valid, big enough, varied and covering every topic."""

from pathlib import Path

from trainer.dataset import duplicate_problems, load_samples
from trainer.lint import TOPICS, lint_report

DATA = Path(__file__).resolve().parents[2] / "data"


def test_shipped_dataset_passes_lint_with_full_coverage():
    train = load_samples([DATA / "train.json"])
    validation = load_samples([DATA / "validation.json"])
    assert len(train) >= 400 and len(validation) >= 80
    assert not duplicate_problems(validation, against=train)  # validation never repeats training code
    report = lint_report(train + validation)
    assert report.errors == []
    assert all(report.coverage[topic] > 0 for topic in TOPICS), report.coverage
