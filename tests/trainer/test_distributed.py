"""`mafioso train` under torchrun: two CPU processes (gloo), the real trainer on a tiny Gemma 3 (issue 24)."""

import json
import os
import socket
import subprocess
import sys

import pytest

from mafioso.core.errors import ConfigError
from mafioso.trainer import train as train_module
from tests.helpers import write_dataset


def _free_port() -> int:
    """A port nobody listens on now (a fixed one fails while another run, e.g. a second checkout's CI, holds it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _torchrun(args, env_extra=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NCCL_NVLS_ENABLE": "0", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", str(_free_port()), "-m", "mafioso", "train", *args],
                          capture_output=True, text=True, env=env, timeout=600)


def test_two_processes_write_one_adapter_with_the_effective_batch(tiny_model_dir, tmp_path):
    data = write_dataset(tmp_path / "train.json")
    out = tmp_path / "adapter"
    done = _torchrun(["--base-model", str(tiny_model_dir), "--data", str(data), "--output", str(out),
                      "--lora-r", "4", "--epochs", "2", "--batch-size", "2", "--grad-accum", "1",
                      "--logging-steps", "1", "--learning-rate", "0.01", "--epoch-snapshots"])
    assert done.returncode == 0, done.stderr[-3000:]
    stats = json.loads((out / "mafioso.json").read_text())["stats"]
    assert stats["processes"] == 2 and stats["effective_batch"] == 4
    log = json.loads((out / "training_log.json").read_text())["log_history"]
    steps = sorted({entry["step"] for entry in log if "loss" in entry})
    assert steps == list(range(1, stats["optimizer_steps"] + 1))  # the loss curve covers every step
    assert not out.with_name("adapter.work").exists() and not list(tmp_path.glob(".adapter.*"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "adapter.epochs", "train.json"]  # one writer
    snapshot = out.with_name("adapter.epochs") / "epoch-1"  # the main process's, after the first of 2 epochs
    assert [p.name for p in snapshot.parent.iterdir()] == ["epoch-1"]
    assert json.loads((snapshot / "mafioso.json").read_text())["stats"]["optimizer_steps"] * 2 == \
        stats["optimizer_steps"]


def test_a_checkpoint_resumes_only_with_its_process_count(tmp_path):
    work = tmp_path / "adapter.work"
    work.mkdir()
    (work / train_module.RUN_FILE).write_text(json.dumps({"processes": 2}))
    train_module._check_process_count(work, 2)
    with pytest.raises(ConfigError, match="made by 2 process.*nproc_per_node 2"):
        train_module._check_process_count(work, 1)
