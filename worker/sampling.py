"""How one answer picks its tokens: greedily, or sampled with a temperature, a nucleus (``top_p``) and a seed.

The worker decodes greedily unless told otherwise: its adapters were tuned and evaluated that way, and the same
code gets the same answer. A request may ask for sampling (OpenAI's ``temperature``, ``top_p`` and ``seed``);
``GenerationConfig.do_sample`` makes sampling the default for requests that do not say. A request's
:class:`Sampling` rides on its :class:`mafioso.worker.control.Control`.

Every engine applies its rules (repetition penalty, n-gram and grounded-decoding bans) to the scores first and
samples last, so a banned token is never drawn. :meth:`Sampling.draw` is the one sampling rule of the torch
engines: temperature, then the nucleus (the fewest most likely tokens whose probability reaches ``top_p``; at
least the most likely one), then one draw from the answer's own generator. A seeded answer draws from a
generator of its own, so the same seed gives the same answer on the same worker whatever else is in its batch
(as OpenAI's ``seed``: repeatable on one machine, not across devices). llama.cpp samples with its own chain.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

__all__ = ["GREEDY", "Sampling"]

_TINY = torch.finfo(torch.float32).tiny
#: How many of the most likely tokens a nucleus is looked for in first (:meth:`Sampling.draw`).
NUCLEUS_CANDIDATES = 1024


@dataclass(frozen=True)
class Sampling:
    """One answer's decoding: ``temperature`` 0 is greedy (``top_p`` and ``seed`` then change nothing)."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None  # None: a fresh random draw per answer

    def __post_init__(self) -> None:
        if self.temperature < 0 or not 0 <= self.top_p <= 1:
            raise ValueError("temperature must be >= 0 and top_p in [0, 1]")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @classmethod
    def default(cls, gen) -> Sampling:
        """The worker's own decoding for requests that ask for none (``GenerationConfig``: greedy unless
        ``do_sample``)."""
        return cls(gen.temperature, gen.top_p) if gen.do_sample else GREEDY

    def settings(self) -> dict:
        """This decoding in ``GenerationConfig``'s words, with the seed: what an answer's record keeps (greedy
        leaves the worker's temperature and nucleus as they are: they did nothing)."""
        drawn = {} if self.greedy else {"temperature": self.temperature, "top_p": self.top_p}
        return {"do_sample": not self.greedy, **drawn, "seed": self.seed}

    def seed_value(self, bits: int = 64) -> int:
        """The seed an answer draws with, as a ``bits``-bit unsigned integer (torch takes 64, llama.cpp 32): its
        own (any integer a client sends, taken modulo 2**bits), or a fresh random one."""
        return self.seed % (1 << bits) if self.seed is not None else random.getrandbits(bits)

    def generator(self, device) -> torch.Generator:
        """A generator of this answer's own on ``device``, seeded (:meth:`seed_value`)."""
        return torch.Generator(device=device).manual_seed(self.seed_value())

    def draw(self, scores: torch.Tensor, generator: torch.Generator) -> int:
        """One token drawn from one row of next-token ``scores`` (banned tokens at -inf are never drawn)."""
        scores = scores.float()
        # from the best score down, by at least float32's smallest normal temperature: 1e-300 (0 in float32)
        # then draws the best token, where 0 / 0 would be NaN
        probs = torch.softmax((scores - scores.max()) / max(self.temperature, _TINY), dim=-1)
        tokens = None  # the vocabulary's order
        if self.top_p < 1:
            # the nucleus from the most likely tokens; the whole vocabulary sorted only when it reaches past
            # them (a sort of 262,144 scores is ~20 ms on a CPU, the top 1,024 ~1 ms)
            whole = probs
            probs, tokens = whole.topk(min(NUCLEUS_CANDIDATES, whole.numel()))
            if probs.sum() < self.top_p and probs.numel() < whole.numel():
                probs, tokens = whole.sort(descending=True)
            before = probs.cumsum(-1) - probs  # the mass of the tokens ranked above each one
            kept = max(1, int((before < self.top_p).sum()))  # the most likely token always stays
            probs, tokens = probs[:kept], tokens[:kept]
        # one uniform number through the cumulative distribution: what torch.multinomial does, without its
        # ~6 ms over a whole vocabulary
        cdf = probs.double().cumsum(-1)
        u = torch.rand((), generator=generator, device=generator.device, dtype=torch.float64) * cdf[-1]
        pick = int(torch.searchsorted(cdf, u, right=True))
        if pick >= cdf.numel():  # u rounded up to the total: the last token that can be drawn
            pick = int(probs.nonzero().max())
        return pick if tokens is None else int(tokens[pick])


#: Greedy decoding: what every answer gets unless its request or the worker's settings ask to sample.
GREEDY = Sampling()
