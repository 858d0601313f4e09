"""bench/bench_retry_cut.py: answers with the claim cut off and on, on the tiny model."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_each_row_is_answered_both_ways_and_summed_by_group(tiny_model_dir, tmp_path):
    rows = [{"key": "a", "code": "def f():\n    return 1\n", "retried": 1},
            {"key": "b", "code": "print(2)\n", "retried": 0}, {"key": "c", "code": "x = 3\n", "retried": 0}]
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text("".join(json.dumps(row) + "\n" for row in rows))
    done = subprocess.run([sys.executable, "bench/bench_retry_cut.py", "--predictions", str(predictions),
                           "--base-model", str(tiny_model_dir), "--adapter", "none", "--also", "1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert [row["key"] for row in result["rows"]] == ["a", "b"]
    assert result["summary"]["retried"]["rows"] == 1 and result["summary"]["not retried"]["rows"] == 1
    assert all(row["off_s"] > 0 and row["on_s"] > 0 for row in result["rows"])
