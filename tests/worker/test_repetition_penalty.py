"""The repetition penalty, written once (worker/repetition_penalty.py, issue 18): transformers' numbers in both its
forms (a mask; ids, in place), and no other module of the product doing the arithmetic (grep proves it). The paths
that use it are held to ``model.generate`` token for token elsewhere (tests/worker/test_fast_decode*.py,
test_engine.py, test_llamacpp_engine.py)."""

import re
from pathlib import Path

import pytest
import torch
from transformers import RepetitionPenaltyLogitsProcessor

from mafioso.worker.repetition_penalty import penalize, penalize_

ROOT = Path(__file__).resolve().parents[2]


def _logits_and_ids(rows=3, vocab=50, n=12, seed=0):
    """Logits of both signs (some exactly 0) and ids with repeats, every row's own."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, vocab, generator=generator) * 4
    logits[:, :3] = 0.0
    ids = torch.randint(0, vocab // 2, (rows, n), generator=generator)  # n draws from 25 tokens: repeats
    ids[:, 0] = ids[:, 1] = 1  # a zero logit, seen twice
    return logits, ids


@pytest.mark.parametrize("penalty", [1.3, 0.7, 1.0])
def test_both_forms_give_transformers_numbers(penalty):
    logits, ids = _logits_and_ids()
    want = RepetitionPenaltyLogitsProcessor(penalty)(ids, logits.clone())
    mask = torch.zeros_like(logits, dtype=torch.bool).scatter_(1, ids, True)
    before = logits.clone()
    assert torch.equal(penalize(logits, mask, penalty), want)
    assert torch.equal(penalize(logits, mask, torch.tensor(penalty)), want)  # the fast decoder's 0-d tensor
    assert torch.equal(logits, before)  # a new tensor, the input left alone
    assert penalize_(logits, ids, penalty) is logits and torch.equal(logits, want)  # in place


def test_a_seen_token_loses_likelihood_whatever_its_sign():
    """The sign rule itself: divide a positive logit, multiply a negative one (flipped, a negative seen logit
    would rise). Unseen tokens keep theirs."""
    logits = torch.tensor([[2.0, -2.0, 3.0, -3.0]])
    mask = torch.tensor([[True, True, False, False]])
    assert penalize(logits, mask, 2.0).tolist() == [[1.0, -4.0, 3.0, -3.0]]
    assert penalize_(logits, torch.tensor([[0, 1]]), 2.0).tolist() == [[1.0, -4.0, 3.0, -3.0]]


def test_rows_see_only_their_own_tokens():
    logits = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    assert penalize(logits, torch.tensor([[True, False], [False, True]]), 2.0).tolist() == [[0.5, 1.0], [1.0, 0.5]]
    assert penalize_(logits, torch.tensor([[0, 0], [1, 1]]), 2.0).tolist() == [[0.5, 1.0], [1.0, 0.5]]  # once each


def test_no_other_module_does_the_penalty_arithmetic():
    """One repetition penalty (issue 18): nothing else in the product divides or multiplies by a penalty or hands
    the job to transformers' processor (or ``generate``'s ``repetition_penalty=``); grep proves it."""
    arithmetic = re.compile(r"[*/]\s*(self\.)?penalty\b|RepetitionPenaltyLogitsProcessor|repetition_penalty\s*=(?!=)")
    writers = sorted(str(p.relative_to(ROOT)) for room in ("bot", "core", "worker", "trainer", "prompts", "mafioso")
                     for p in (ROOT / room).rglob("*.py") if arithmetic.search(p.read_text(encoding="utf-8")))
    assert writers == ["worker/repetition_penalty.py"]
