"""A streamed answer: tokens from the decode thread to the event loop, and text that is safe to show early.

The engines hand each new token to the request's :class:`mafioso.worker.control.Control`, which pushes it into a
:class:`TokenSink` (thread-safe; it wakes the event loop at most once per batch of tokens). :class:`StreamText`
turns the tokens into text deltas that never have to be taken back, in the usual case:

* it shows only text the engine's own finishing rules give for the tokens so far (``engine.text_so_far``:
  the ``###`` cut, the loop cut, the code scrub and the claim post-check, the same functions as the final
  answer), so a half-written multi-byte character or a ``#`` that may become ``###`` is never shown;
* it holds back the tokens of a repeat that may still become a loop (:func:`loop_safe`): the loop rule finds a
  loop only once it has repeated for a while and then cuts the answer back to its first copy, so the tokens
  from the start of the answer's current periodic run (period 1-12) on are not shown yet; in prose that is a
  token or two. For a unit of 13-64 tokens (a sentence said again and again) it holds back the repetition
  only, from where the answer starts to repeat itself: the cut keeps the first copy whole; and sentences that
  repeat the one before with a word changed ("Counting to one, …. Counting to two, ….") from the second on
  (:func:`variant_safe`), as the variant loop keeps only the first;
* it releases whole sentences only (up to the last sentence end followed by more text), and only when the
  new text extends what was sent: a later sentence that makes the claim check drop an earlier one, or code
  that makes the scrub rewrite the answer, holds the stream back instead of contradicting it. A count that
  the loop rule cuts (``1, 2, 3, …``) never spans a sentence end, so whole sentences keep it out too.

At the end :meth:`StreamText.finish` compares the final answer with what was sent: normally it sends the
rest; when the final text does not extend what was sent (rare: a check changed text already shown), the
caller is told to replace the whole text (docs/API.md says how each endpoint carries that).
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable

from mafioso.core.loop_guard import SENTENCE_END, LoopRule

__all__ = ["StreamText", "TokenSink", "loop_safe", "ready_tokens", "settled", "variant_safe"]

#: Text is recomputed from the tokens at most this often per stream: the claim check parses the code, and
#: 64 streams on one event loop must not each do it per token.
RECHECK_S = 0.2

# a sentence end as the loop cut knows it (., !, ?, …, then closing quotes/brackets/markdown; a line break),
# followed by whitespace: the sentence is over
_SENTENCE_END = re.compile(r"(?:[.!?…]+[\"'”’)\]*_`]*\s|\n)")


def _run(ids: list[int], p: int) -> int:
    """How many of the last tokens of ``ids`` equal the token ``p`` before each."""
    n, k = len(ids), 0
    while k < n - p and ids[n - 1 - k] == ids[n - 1 - k - p]:
        k += 1
    return k


def loop_safe(ids: list[int], max_period: int, long_period: int = 0) -> int:
    """How many of an answer's first tokens no loop found later can cut: everything before the earliest start
    of a periodic run at its end (a run of period p from i on: ``ids[j] == ids[j - p]`` for every j >= i; the
    loop rule's loop starts at i - p, :class:`mafioso.core.loop_guard.LoopGuard`), and before the last
    ``max_period`` tokens, where a new run may begin. A run of a longer period (up to ``long_period``) holds
    back from i only: its cut keeps the whole first copy (:func:`mafioso.core.loop_guard.cut_loop`)."""
    n = len(ids)
    safe = n - max_period
    for p in range(1, min(max_period, n - 1) + 1):
        if k := _run(ids, p):
            safe = min(safe, n - k - p)
    for p in range(max_period + 1, min(long_period, n - 1) + 1):
        if k := _run(ids, p):
            safe = min(safe, n - k)
    return max(0, safe)


#: A sentence of shown text, up to its end as the loop cut finds ends (or the end of the text).
_SENTENCE = re.compile(rf"[^\n]*?(?:{SENTENCE_END.pattern}|$)")


def variant_safe(text: str) -> str:
    """``text`` (whole sentences) without the end of a run of variant sentences it ends with, past the run's first
    sentence: the loop rule's variant cut keeps that one only (``LoopRule.variants``). Here a run is 2 or more
    sentences in a row, each with as many words as the one before (3 or more) and at most two of them other:
    looser than the rule's one token, so that what the rule may cut is held back until the run breaks."""
    spans = [(m.start(), m.end(), m.group().split()) for m in _SENTENCE.finditer(text) if m.group().strip()]
    first = len(spans) - 1
    while first > 0:
        words, before = spans[first][2], spans[first - 1][2]
        if len(words) < 3 or len(words) != len(before) or sum(a != b for a, b in zip(words, before)) > 2:
            break
        first -= 1
    return text[:spans[first][1]] if first < len(spans) - 1 else text


def ready_tokens(gen) -> Callable[[list[int]], int]:
    """``ready(ids)``: how many of an answer's tokens so far a stream may show under the decoding settings
    ``gen`` (all of them when ``stop_loops`` is off: nothing is cut back then)."""
    if not getattr(gen, "stop_loops", False):
        return len
    rule = LoopRule.of(gen)
    return lambda ids: loop_safe(ids, rule.max_period, rule.long_period)


def settled(text: str) -> str:
    """``text`` up to its last complete sentence (one followed by more text), without the trailing space."""
    end = 0
    for match in _SENTENCE_END.finditer(text):
        end = match.end()
    return text[:end].rstrip()


class TokenSink:
    """Tokens pushed by the engine's decode thread, taken by a coroutine on ``loop``."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._lock = threading.Lock()
        self._tokens: list[int] = []
        self._signalled = False
        self._ready = asyncio.Event()

    def push(self, token: int) -> None:
        """One new token (any thread); wakes the loop unless a wake-up is already on its way."""
        with self._lock:
            self._tokens.append(token)
            if self._signalled:
                return
            self._signalled = True
        try:
            self._loop.call_soon_threadsafe(self._ready.set)
        except RuntimeError:  # the loop is closed: nobody reads this stream any more
            pass

    def take(self) -> list[int]:
        """The tokens pushed since the last take (may be empty after a spurious wake-up)."""
        with self._lock:
            tokens, self._tokens = self._tokens, []
            self._signalled = False
            self._ready.clear()
        return tokens

    async def wait(self) -> None:
        """Until a token was pushed since the last take."""
        await self._ready.wait()


class StreamText:
    """Text deltas for one streamed answer, from its tokens (module docstring)."""

    def __init__(self, text_of: Callable[[list[int]], str], ready: Callable[[list[int]], int] = len,
                 clock=time.monotonic, hold: Callable[[str], str] | None = None):
        """``text_of(ids)``: the answer's text if it ended after ``ids``; ``ready(ids)``: how many of them may
        be shown (:func:`ready_tokens`); ``hold(text)``: the part of its whole sentences that may (with the loop
        rule on: :func:`variant_safe`)."""
        self._text_of = text_of
        self._ready = ready
        self._hold = hold or (lambda text: text)
        self._clock = clock
        self._checked_at = float("-inf")
        self._checked_len = 0
        self.ids: list[int] = []
        self.sent = ""

    def add(self, tokens: list[int], *, force: bool = False) -> str:
        """Take new tokens; the text that may be shown now beyond what was sent ("" for none yet)."""
        self.ids += tokens
        ready = self._ready(self.ids)
        now = self._clock()
        if ready <= self._checked_len or (not force and now - self._checked_at < RECHECK_S):
            return ""
        self._checked_at, self._checked_len = now, ready
        safe = self._hold(settled(self._text_of(self.ids[:ready])))
        if len(safe) <= len(self.sent) or not safe.startswith(self.sent):
            return ""
        delta, self.sent = safe[len(self.sent):], safe
        return delta

    def finish(self, final: str) -> tuple[str, bool]:
        """``(rest, replaced)`` for the final answer ``final``: the text still to send, or, when ``final`` does
        not extend what was sent, the whole of it with ``replaced`` True."""
        if final.startswith(self.sent):
            rest, self.sent = final[len(self.sent):], final
            return rest, False
        self.sent = final
        return final, True
