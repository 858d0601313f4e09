"""What one request asks of the engine besides its prompt: its own answer length and a way to call it off.

The worker makes one :class:`Control` per request and hands the engine the list beside the prompts
(``engine.generate(requests, controls)``). ``max_tokens`` cuts that answer short of the engine's
``max_new_tokens``; ``cancel()`` (the client hung up, the request timed out, a sibling prompt failed) tells
the engine nobody wants the answer any more: it stops decoding that row at its next step and frees the slot.
``sampling`` is how the answer picks its tokens (:mod:`mafioso.worker.sampling`; None: the worker's default),
``stop`` the strings it ends at and ``cut`` the claim cut (both :mod:`mafioso.worker.decoding_rules`).
The engines read ``cancelled`` once per row per decode step, so it is a plain attribute, not a lock.

Both engines call :meth:`Control.emit` with each answer token as it is decoded (in their decode thread): it
notes when the first one came (time to first token) and hands the token to ``sink`` when the request streams
(:class:`mafioso.worker.token_stream.TokenSink`). ``emit`` must stay cheap: it runs once per token per row.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from mafioso.worker.sampling import Sampling

if TYPE_CHECKING:
    from mafioso.worker.decoding_rules import ClaimCut

__all__ = ["Control", "Sink"]


class Sink(Protocol):
    """Where a streaming request's tokens go, one call per token, from the engine's decode thread."""

    def push(self, token: int) -> None: ...


@dataclass(eq=False)
class Control:
    """One request's answer-length limit (None = the engine's), sampling, stop strings, cancel flag and token sink."""

    max_tokens: int | None = None
    sampling: Sampling | None = None  # None: the worker's default (GenerationConfig: greedy unless do_sample)
    stop: tuple[str, ...] = ()  # the request's stop strings: the answer ends at any of them
    cancelled: bool = False
    sink: Sink | None = None  # a streaming request's consumer of answer tokens
    first_token_at: float | None = None  # time.monotonic() when the engine made the first answer token
    muted: bool = False  # its tokens go to no sink any more: an answer decoded again (mafioso.worker.retry)
    cut: ClaimCut | None = None  # ends the answer after the first sentence the post-check would drop (retries)

    def emit(self, token: int) -> None:
        """The engine made the answer's next token (called from its decode thread)."""
        if self.first_token_at is None:
            self.first_token_at = time.monotonic()
        if self.sink is not None and not self.muted:
            self.sink.push(token)

    def cancel(self) -> None:
        """Nobody waits for this answer any more: stop decoding it (safe from any thread)."""
        self.cancelled = True

    def decoding(self, gen) -> Sampling:
        """How this answer picks its tokens under the engine's ``GenerationConfig`` ``gen``."""
        return self.sampling or Sampling.default(gen)

    def limit(self, max_new_tokens: int) -> int:
        """The most tokens this answer may have under an engine limit of ``max_new_tokens``."""
        return max_new_tokens if self.max_tokens is None else min(self.max_tokens, max_new_tokens)
