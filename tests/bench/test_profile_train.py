"""bench/profile_train.py on the CPU: the trainer of `mafioso train`, a step to warm up, a step profiled."""

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers import write_dataset, write_one_row_validation

ROOT = Path(__file__).resolve().parents[2]


def test_the_profile_covers_the_asked_steps_and_lists_the_host_ops(tiny_model_dir, tmp_path):
    data = write_dataset(tmp_path / "train.json")
    val = write_one_row_validation(tmp_path / "val.jsonl")
    out = tmp_path / "profile"
    done = subprocess.run([sys.executable, "bench/profile_train.py", "--base-model", str(tiny_model_dir),
                           "--recipe", "fast", "--batch-size", "2", "--max-length", "1024", "--data", str(data),
                           "--validation", str(val), "--skip", "1", "--steps", "2", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary = json.loads((out / "profile.json").read_text())
    assert [s["step"] for s in summary["steps"]] == [2, 3]
    # two packs a step, each up to 1,024 tokens: more than one row's worth (TRL's tally counts one row of a batch)
    assert all(s["seconds"] > 0 and 1024 < s["tokens"] <= 2048 for s in summary["steps"])
    assert summary["device"] == "cpu" and summary["tokens_per_s"] > 0
    text = (out / "profile.txt").read_text()
    assert "## by self CPU time" in text and "aten::" in text  # torch's op names: the profiler saw the steps
    assert not (out / "adapter").exists()  # nothing saved

