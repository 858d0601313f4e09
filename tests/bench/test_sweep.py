"""bench/sweep.py on the CPU: a tiny Gemma 3 trained with epoch snapshots, then every epoch scored by eval, all
through the real commands (a GPU round depends on this script working the first time)."""

import json
import subprocess
import sys
from pathlib import Path

from tests.helpers import write_dataset, write_one_row_validation

ROOT = Path(__file__).resolve().parents[2]


def test_the_sweep_scores_each_epoch_snapshot_and_one_ships(tiny_model_dir, tmp_path):
    data = write_dataset(tmp_path / "train.json")
    val = write_one_row_validation(tmp_path / "val.jsonl")
    out = tmp_path / "sweep"
    done = subprocess.run([sys.executable, "bench/sweep.py", "--base-model", str(tiny_model_dir), "--out", str(out),
                           "--data", str(data), "--validation", str(val),
                           "--run", "r4:--lora-r=4,--epochs=3,--grad-accum=1,--epoch-snapshots,--quantization=none",
                           "--snapshots-from", "2", "--with-base", "--eval-flags=--max-new-tokens,2,--device,cpu"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = json.loads((out / "sweep.json").read_text())
    assert set(results) == {"r4", "r4@e2", "base"}  # epoch 1's snapshot is kept, not scored
    assert (out / "r4" / "adapter.epochs" / "epoch-1").is_dir() and not (out / "r4" / "eval-e1").exists()
    assert results["r4@e2"]["train"]["epoch"] == 2 and "epoch" not in results["r4"]["train"]
    for name, folder in (("r4", "eval"), ("r4@e2", "eval-e2")):
        assert (out / "r4" / folder / "metrics.json").is_file() and (out / "r4" / f"{folder}.log").is_file()
        assert 0 <= results[name]["metrics"]["grounded"] <= 1
    assert "| r4 | " in done.stdout and "| r4@e2 | " in done.stdout

    target = tmp_path / "shipped"
    done = subprocess.run([sys.executable, "bench/ship_adapter.py", str(out / "r4"), str(out / "base"), str(target),
                           "--base", "embedded", "--epoch", "2", "--validation", str(val)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    snapshot = out / "r4" / "adapter.epochs" / "epoch-2"
    assert (target / "adapter_model.safetensors").read_bytes() == (snapshot / "adapter_model.safetensors").read_bytes()
    card = (target / "README.md").read_text()
    assert "after epoch 2 of 3 (" in card
    # the run's rate is the snapshot's too; the wall time, which is the whole run's, is left out, never "None"
    rate = json.loads((out / "r4" / "adapter" / "mafioso.json").read_text())["stats"]["train_tokens_per_s"]
    assert f"{rate} tokens/s" in card and "None" not in card and "wall time" not in card
    assert len((target / "eval" / "predictions.jsonl").read_text().splitlines()) == 1


def test_an_eval_out_of_gpu_memory_beside_others_runs_again_alone(tmp_path):
    """The late afternoon round lost six of twelve evals to "CUDA out of memory": each now gets a second run,
    alone, once the others end; an eval that fails otherwise is not run again."""
    sys.path.insert(0, str(ROOT / "bench"))
    from sweep import run_evals

    def stand_in(name: str, failure: str) -> list[str]:  # fails the first time, with `failure`, then succeeds
        mark = tmp_path / f"{name}.ran"
        script = (f"import pathlib, sys\nmark = pathlib.Path({str(mark)!r})\nif mark.exists():\n    print('scored')\n"
                  f"else:\n    mark.touch()\n    print({failure!r})\n    sys.exit(1)\n")
        return [sys.executable, "-c", script]

    commands = {"oom": (stand_in("oom", "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2 GiB"),
                        tmp_path / "oom.log"),
                "broken": (stand_in("broken", "ValueError: no such adapter"), tmp_path / "broken.log"),
                "fine": ([sys.executable, "-c", "print('scored')"], tmp_path / "fine.log")}
    assert run_evals(commands, parallel=2) == {"oom": 0, "broken": 1, "fine": 0}
    assert (tmp_path / "oom.log").read_text() == "scored\n"  # the second run's log
    assert "no such adapter" in (tmp_path / "broken.log").read_text()
