"""Chat adapter test helpers: a fake Explainer (the one boundary the adapters call), plain and streaming."""

from __future__ import annotations

import asyncio


class FakeExplainer:
    """Answers ``answer`` (default: "Listen up, pal: <code>. Capisce?") or raises ``error``; records the code
    (``codes``) and the question asked about it (``requests``).

    ``gate`` (an asyncio.Event) holds every answer until the test sets it; ``events`` is a shared log the test
    can also append to, to check the order of things. ``persona``: the voice it answers in, as a Worker's.
    """

    def __init__(self, answer: str | None = None, error: Exception | None = None,
                 gate: asyncio.Event | None = None, events: list | None = None, persona: str = "mafioso"):
        self.answer, self.error, self.gate, self.persona = answer, error, gate, persona
        self.codes: list[str] = []
        self.requests: list[str | None] = []
        self.events = [] if events is None else events

    async def explain(self, code: str, request: str | None = None):
        from mafioso.core.explanation import Explanation

        self.codes.append(code)
        self.requests.append(request)
        self.events.append("explain")
        if self.gate is not None:
            await asyncio.wait_for(self.gate.wait(), 10)
        if self.error is not None:
            raise self.error
        text = self.answer if self.answer is not None else f"Listen up, pal: {code}. Capisce?"
        return Explanation(text=text, tokens=len(text.split()), latency_s=0.01, finished=True)


class StreamingExplainer(FakeExplainer):
    """A FakeExplainer that also streams: its answer comes as ``deltas``, one event each, and ``tick`` (when
    given) runs before each one (a test clock moves on). The last event carries the whole answer."""

    def __init__(self, deltas: list[str], tick=None, **options):
        super().__init__(answer="".join(deltas), **options)
        self.deltas, self.tick = deltas, tick
        self.closed = 0  # streams left (finished or hung up)

    async def stream(self, code: str, request: str | None = None):
        from mafioso.worker.service import StreamEvent

        answer = await self.explain(code, request)
        explainer = self

        class Events:
            async def _events(self):
                for delta in explainer.deltas[:-1]:
                    if explainer.tick:
                        explainer.tick()
                    yield StreamEvent(delta)
                yield StreamEvent(explainer.deltas[-1], answer)

            def __aiter__(self):
                return self._events()

            async def aclose(self):
                explainer.closed += 1

        return Events()
