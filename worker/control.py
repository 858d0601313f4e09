"""What one request asks of the engine besides its prompt: its own answer length and a way to call it off.

The worker makes one :class:`Control` per request and hands the engine the list beside the prompts
(``engine.generate(requests, controls)``). ``max_tokens`` cuts that answer short of the engine's
``max_new_tokens``; ``cancel()`` (the client hung up, the request timed out, a sibling prompt failed) tells
the engine nobody wants the answer any more: it stops decoding that row at its next step and frees the slot.
The engines read ``cancelled`` once per row per decode step, so it is a plain attribute, not a lock.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Control"]


@dataclass(eq=False)
class Control:
    """One request's answer-length limit (None = the engine's) and cancel flag."""

    max_tokens: int | None = None
    cancelled: bool = False

    def cancel(self) -> None:
        """Nobody waits for this answer any more: stop decoding it (safe from any thread)."""
        self.cancelled = True

    def limit(self, max_new_tokens: int) -> int:
        """The most tokens this answer may have under an engine limit of ``max_new_tokens``."""
        return max_new_tokens if self.max_tokens is None else min(self.max_tokens, max_new_tokens)
