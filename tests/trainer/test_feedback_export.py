"""From ratings to training data: report, export, and the export passing ``mafioso data check``."""

import json

import pytest

from mafioso.core.feedback import AnswerRecord, FeedbackStore
from mafioso.cli import main

pytestmark = pytest.mark.usefixtures("clean_env")

LIKED = AnswerRecord("good1", code="def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
                     answer="`add` is a two-man job, pal: it takes `a` and `b` and hands back their sum. "
                            "The print line "
                            "asks for 2 and 3, so 5 goes on the table, capisce?",
                     request="what does it print?", adapter="default", base_model="embedded")
DISLIKED = AnswerRecord("bad1", code="x = [1, 2, 3]\nprint(len(x))", answer="It prints the moon.",
                        adapter="default", base_model="embedded", dropped=1)


def test_report_export_and_data_check(tmp_path, capsys):
    db = tmp_path / "feedback.sqlite3"  # the clean_env MAFIOSO_FEEDBACK_DB
    store = FeedbackStore.open(db)
    for record in (LIKED, DISLIKED):
        store.record_answer(record, user=1234)
    store.rate("good1", 1, user=1)
    store.rate("good1", 1, user=2)
    store.rate("bad1", -1, user=1)
    store.close()

    assert main(["feedback", "report", "--png", str(tmp_path / "chart.png")]) == 0
    out = capsys.readouterr().out
    assert "default" in out and "0.67" in out  # two ups, one down
    claims = out[out.index("answers (the claim post-check)"):].splitlines()
    assert claims[1].split() == ["default", "2", "1", "0.50"]  # one answer of two lost a sentence to the check
    assert (tmp_path / "chart.png").read_bytes()[:4] == b"\x89PNG"

    assert main(["data", "export", "--feedback", str(tmp_path / "export")]) == 0
    liked = json.loads((tmp_path / "export" / "liked.json").read_text())
    rewrite = json.loads((tmp_path / "export" / "to_rewrite.json").read_text())
    assert list(liked) == ["feedback-good1"] and liked["feedback-good1"]["prompt"] == "what does it print?"
    assert list(rewrite) == ["feedback-bad1"] and rewrite["feedback-bad1"]["rejected_explanation"] == DISLIKED.answer
    capsys.readouterr()
    assert main(["data", "check", str(tmp_path / "export" / "liked.json")]) == 0, capsys.readouterr()
    assert main(["data", "check", "--schema-only", str(tmp_path / "export" / "to_rewrite.json")]) == 1
