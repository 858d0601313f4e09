"""bench/bench_request_work.py: a request's host work per answer, on the tiny model."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_it_prints_the_milliseconds_per_request(tiny_model_dir):
    done = subprocess.run([sys.executable, "bench/bench_request_work.py", "--base-model", str(tiny_model_dir),
                           "--pastes", "3", "--repeat", "1"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["pastes"] == 3 and result["ms_per_request"] > 0
