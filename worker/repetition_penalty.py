"""The repetition penalty, written once for every decode path (``GenerationConfig.repetition_penalty``, 1.0 = off).

    logits = penalize(logits, seen, penalty)   # logits (rows, vocab); seen: a (rows, vocab) mask or (rows, n) ids

CTRL's rule (Keskar et al., 2019) exactly as transformers' ``RepetitionPenaltyLogitsProcessor`` computes it: a
token a row has seen loses likelihood whatever its logit's sign, a positive logit divided by the penalty, a
negative one multiplied by it; the others are left as they are.

What counts as seen is each path's own bookkeeping (``GenerationConfig.penalize_prompt``: the prompt's tokens
too, or only the answer's): ``GenerateEngine`` hands in the ids of ``generate``'s rows, the llama.cpp engine the
ids of its one answer, and the fast decoder a (slots, vocab) mask it keeps on the device. The mask form is plain
tensor arithmetic (no host sync, no branch on the data), so the decoder runs it inside torch.compile and its CUDA
graphs; the ids form touches only the seen entries (a gather and a scatter, like transformers').
"""

from __future__ import annotations

import torch

__all__ = ["penalize"]


def _penalised(values: torch.Tensor, penalty: float | torch.Tensor) -> torch.Tensor:
    # the sign rule: dividing a negative logit would raise it, so a negative one is multiplied instead
    return torch.where(values < 0, values * penalty, values / penalty)


def penalize(logits: torch.Tensor, seen: torch.Tensor, penalty: float | torch.Tensor) -> torch.Tensor:
    """``logits`` (rows, vocab) with the repetition penalty applied to the tokens each row has seen: ``seen`` is
    a bool mask (rows, vocab), or token ids (rows, n), repeats allowed. ``penalty`` a float or a 0-d tensor (the
    fast decoder's, changed between graph replays). Returns a new tensor; ``logits`` is left as it was."""
    if seen.dtype == torch.bool:
        return torch.where(seen, _penalised(logits, penalty), logits)
    return logits.scatter(1, seen, _penalised(logits.gather(1, seen), penalty))
