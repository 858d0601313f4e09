"""The repetition penalty, written once for every decode path (``GenerationConfig.repetition_penalty``, 1.0 = off).

    logits = penalize(logits, seen, penalty)    # seen: (rows, vocab) bool mask; a new tensor
    penalize_(logits, seen_ids, penalty)        # seen_ids: (rows, n) token ids, repeats allowed; in place

CTRL's rule (Keskar et al., 2019) exactly as transformers' ``RepetitionPenaltyLogitsProcessor`` computes it: a
token a row has seen loses likelihood whatever its logit's sign, a positive logit divided by the penalty, a
negative one multiplied by it; the others are left as they are.

What counts as seen is each path's own bookkeeping (``GenerationConfig.penalize_prompt``: the prompt's tokens
too, or only the answer's): the fast decoder keeps a (slots, vocab) mask on the device and calls :func:`penalize`,
plain tensor arithmetic (no host sync, no branch on the data) that it runs inside torch.compile and its CUDA
graphs; ``GenerateEngine`` (the ids of ``generate``'s rows) and the llama.cpp engine (the ids of its one answer)
call :func:`penalize_`, which touches only the seen entries (one full copy of a 262k-token row costs more than
the whole rule on a CPU).
"""

from __future__ import annotations

import torch

__all__ = ["penalize", "penalize_"]


def _penalised(values: torch.Tensor, penalty: float | torch.Tensor) -> torch.Tensor:
    # the sign rule: dividing a negative logit would raise it, so a negative one is multiplied instead
    return torch.where(values < 0, values * penalty, values / penalty)


def penalize(logits: torch.Tensor, seen: torch.Tensor, penalty: float | torch.Tensor) -> torch.Tensor:
    """``logits`` (rows, vocab) with the repetition penalty applied where the bool mask ``seen`` (rows, vocab) is
    set, as a new tensor. ``penalty``: a float, or a 0-d tensor (the fast decoder's, changed between graph
    replays)."""
    return torch.where(seen, _penalised(logits, penalty), logits)


def penalize_(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """Apply the repetition penalty to ``logits`` (rows, vocab) in place, at the token ids ``seen`` (rows, n) of
    each row (repeats allowed); returns ``logits``."""
    return logits.scatter_(1, seen, _penalised(logits.gather(1, seen), penalty))
