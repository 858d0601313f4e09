"""bench/bench_train.py on the CPU: the default and the fast recipe on a tiny Gemma 3, a step each, then eval's
comparison of the two adapters, all through the real commands."""

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers import write_dataset, write_one_row_validation

ROOT = Path(__file__).resolve().parents[2]


def test_the_bench_trains_both_recipes_and_compares_them(tiny_model_dir, tmp_path):
    data = write_dataset(tmp_path / "train.json")
    val = write_one_row_validation(tmp_path / "val.jsonl")
    out = tmp_path / "bench"
    done = subprocess.run([sys.executable, "bench/bench_train.py", "--base-model", str(tiny_model_dir),
                           "--data", str(data), "--validation", str(val), "--max-steps", "1", "--out", str(out),
                           "--eval", "--eval-flags", "--limit 1 --max-new-tokens 2"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = json.loads((out / "bench_train.json").read_text())
    runs = results["runs"]
    assert list(runs) == ["qlora", "fast"] and [r["recipe"] for r in runs.values()] == ["qlora", "fast"]
    for r in runs.values():
        assert r["optimizer_steps"] == 1 and r["train_tokens_per_s"] > 0 and r["eval_loss"] > 0
        assert r["wall_s"] >= r["train_runtime_s"] > 0
    assert (out / "fast" / "adapter_model.safetensors").is_file()
    assert set(results["eval"]["fast"]["scores"]) == {"qlora", "fast"}
    # each run's figures are printed when it ends, before the table (a cut call still shows them)
    assert done.stdout.index("  qlora: train_tokens_per_s ") < done.stdout.index("train fast: exit 0")
    table = done.stdout[done.stdout.index("| run |"):]
    assert "| qlora | " in table and "| fast | " in table and "gate fast vs the baseline:" in table


def test_a_failed_run_is_named_and_fails_the_bench(tiny_model_dir, tmp_path):
    data = write_dataset(tmp_path / "train.json")
    out = tmp_path / "bench"
    done = subprocess.run([sys.executable, "bench/bench_train.py", "--base-model", str(tiny_model_dir),
                           "--data", str(data), "--validation", str(tmp_path / "missing.json"), "--max-steps", "1",
                           "--run", "fast", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    assert "| fast | exit 2; see " in done.stdout and (out / "fast.train.log").is_file()
