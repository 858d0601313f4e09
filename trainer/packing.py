"""The fast recipe's packed batches: each pack a row of its own, never the whole batch one sequence.

TRL's padding-free collator joins a batch's packs end to end into one sequence, which suits variable-length flash
attention (it reads the sequence boundaries), but sdpa and eager attention then get one square mask over the whole
batch: 8 packs of 2,048 tokens make a 16,384 x 16,384 mask in every layer, 8 times the work of the packs' own
squares. On an H100, cuDNN's masked attention took 68 % of such a step's device time (docs/BENCHMARKS.md,
2026-12-05 late afternoon). Here each pack stays one row of the batch: its ``position_ids`` restart at each
training row inside it, and with no attention mask transformers lets each training row attend only to itself
(``masking_utils.find_packed_sequence_indices``), as the joined sequence did; the padding after a shorter pack is
one-token sequences with no label. The loss is the same sum over the same labels (tests/trainer/test_fast_recipe.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["PackRows"]


@dataclass(frozen=True)
class PackRows:
    """Collates packs (``input_ids``, ``labels``, ``seq_lengths`` from TRL's packing) or plain rows into
    ``input_ids``, ``labels`` and ``position_ids`` of shape (batch, longest), with no attention mask."""

    pad_token_id: int

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(example["input_ids"]) for example in examples)
        input_ids = torch.full((len(examples), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full_like(input_ids, -100)
        position_ids = torch.zeros_like(input_ids)  # padding: each token a sequence of its own
        for row, example in enumerate(examples):
            length = len(example["input_ids"])
            input_ids[row, :length] = torch.as_tensor(example["input_ids"])
            labels[row, :length] = torch.as_tensor(example.get("labels", example["input_ids"]))
            position_ids[row, :length] = torch.cat([torch.arange(n) for n in example.get("seq_lengths") or [length]])
        # a training row's first token: nothing of its own predicts it (the row before it in the pack must not)
        labels[position_ids == 0] = -100
        return {"input_ids": input_ids, "labels": labels, "position_ids": position_ids}
