"""Training without CUDA: only the answer's positions go through the LM head (docs/BENCHMARKS.md, "Training on
a CPU")."""

import pytest
import torch
from trl.trainer import utils as trl_utils

from mafioso.core.config import TrainConfig, build
from mafioso.trainer import train as train_module
from tests.helpers import write_dataset


class RowsScored:
    """Stands in for TRL's chunked log-prob function and records how many positions each call scores."""

    def __init__(self, real):
        self.real, self.rows = real, []

    def apply(self, hidden, *args):
        self.rows.append(hidden.shape[0])
        return self.real.apply(hidden, *args)


def _loss_and_grads(trainer, batch) -> tuple[float, dict]:
    trainer.model.zero_grad()
    loss = trainer.compute_loss(trainer.model, dict(batch))
    loss.backward()
    grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    return loss.item(), grads


def test_the_cpu_scores_only_the_answer_positions_with_the_same_loss_and_gradients(tiny_model_dir, tmp_path,
                                                                                      monkeypatch):
    monkeypatch.setattr(trl_utils, "_use_triton", trl_utils._use_triton)  # undone after the test
    data = write_dataset(tmp_path / "d.json")
    run = train_module.setup(build(TrainConfig, {"recipe": "fast", "base_model": str(tiny_model_dir),
                                                 "data": [str(data)], "output": str(tmp_path / "a")}))
    trainer = run.trainer
    trainer.model.eval()  # no LoRA dropout: both computations see the same weights
    batch = trainer.data_collator([trainer.train_dataset[0]])
    positions = batch["input_ids"].shape[1] - 1
    answer = int((batch["labels"][:, 1:] != -100).sum())
    assert 0 < answer < positions / 2  # most positions are the prompt's

    spy = RowsScored(trl_utils._ChunkedLogProbFunction)
    monkeypatch.setattr(trl_utils, "_ChunkedLogProbFunction", spy)
    compact_loss, compact_grads = _loss_and_grads(trainer, batch)
    assert spy.rows == [answer]
    monkeypatch.setattr(trl_utils, "_use_triton", lambda device: False)  # TRL's own rule on a CPU
    full_loss, full_grads = _loss_and_grads(trainer, batch)
    assert spy.rows == [answer, positions]
    assert compact_loss == pytest.approx(full_loss, rel=1e-6)
    assert compact_grads.keys() == full_grads.keys() and any("lora" in name for name in compact_grads)
    for name, grad in compact_grads.items():
        torch.testing.assert_close(grad, full_grads[name], rtol=1e-4, atol=1e-7, msg=name)

