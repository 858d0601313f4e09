"""What the chat adapters share to show an answer as it is written (issue 20).

:func:`answer_texts` turns any explainer into a growing text: with ``stream`` (the in-process worker, the
HTTP client) the text so far after each delta, else the whole answer at once; the last item carries the
:class:`mafioso.core.explanation.Explanation`, whose text is final (it may replace what was shown, when the
final post-check changed it). :class:`Throttle` keeps edits of a platform message to one per interval per
channel, the rate limit Discord and Slack both ask for.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Hashable

from mafioso.core.explanation import Explainer, Explanation

__all__ = ["IN_PROGRESS", "Throttle", "answer_texts"]

#: Shown after the text while the answer is still being written; the final edit drops it.
IN_PROGRESS = " ⏳"


async def answer_texts(explainer: Explainer, code: str,
                       request: str | None = None) -> AsyncIterator[tuple[str, Explanation | None]]:
    """``(text so far, None)`` while the answer grows, then ``(final text, answer)``; raises the explainer's
    RequestError. Leaving early hangs up: the worker stops decoding the answer."""
    stream = getattr(explainer, "stream", None)
    if stream is None:
        answer = await explainer.explain(code, request)
        yield answer.text, answer
        return
    events = await stream(code, request)
    shown = ""
    try:
        async for event in events:
            if event.answer is not None:
                yield event.answer.text, event.answer
                return
            shown += event.delta
            yield shown, None
    finally:
        await events.aclose()


class Throttle:
    """At most one action per ``interval`` seconds per key (a channel): :meth:`ready` says whether now is one."""

    def __init__(self, interval: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.interval, self.clock = interval, clock
        self._last: dict[Hashable, float] = {}

    def ready(self, key: Hashable) -> bool:
        """True (and the interval restarts) when ``key`` may act now."""
        now = self.clock()
        if now - self._last.get(key, float("-inf")) < self.interval:
            return False
        if len(self._last) > 10_000:  # forget channels quiet for long
            self._last = {k: t for k, t in self._last.items() if now - t < self.interval}
        self._last[key] = now
        return True
