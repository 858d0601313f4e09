"""The in-process generation worker: one bounded queue, one scheduler, one GPU thread.

    worker = Worker(load_engine(cfg, gen), cfg)
    await worker.start()
    answer = await worker.explain("print(1 + 1)", max_tokens=100)
    await worker.stop()

``explain`` checks the input (:mod:`mafioso.core.guard`), then admits the request only if it can be answered in
time: at the measured service rate (answers per second of engine work, :class:`ServiceRate`) the requests
ahead of it plus itself must finish within ``ADMIT_HEADROOM`` of the request timeout, and the queue must
have room. Otherwise it is refused at once with :class:`WorkerBusy`, whose ``retry_after`` says when the
work ahead will have drained at that rate. Until a round of answers (one per slot, at most 32) is measured,
at most ``2 x slots`` requests are in the worker at once. A refusal in a millisecond beats a 504 after two
minutes.

The scheduler takes up to ``max_batch_size`` waiting requests at a time and runs ``engine.generate`` on them
in one dedicated thread, so concurrent requests share a batch while the event loop stays free. A request
that times out or is cancelled (the HTTP client hung up, a sibling prompt failed) leaves the queue at once;
if it is already decoding, its :class:`mafioso.worker.control.Control` is cancelled and the engine stops its row at
the next decode step. Both count in ``mafioso_cancelled_total``. ``stop(drain=True)`` refuses new requests
and finishes every queued one; ``stop(drain=False)`` fails the queued ones with :class:`WorkerUnavailable`.
Nothing is dropped silently.

The engine is a :class:`mafioso.worker.engines.Engine` (tests inject a fake one): ``generate(list[(code,
request)], list[Control]) -> list[Generation]``, where each :class:`mafioso.worker.control.Control` carries its
request's ``max_tokens``, sampling and cancel flag; ``prompt_tokens(code, request)`` and ``max_prompt_tokens``
let the guard check prompts against the model's context. An engine that owns its GPU thread and admits new rows between
decode steps (continuous batching) has ``continuous_slots = N``: the worker then hands it each request on
its own, up to N at once (N calling threads that only wait on the engine), so an answer comes back as soon
as its own row finishes instead of with the slowest row of a batch.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import math
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily

from mafioso.core import guard
from mafioso.worker.control import Control
from mafioso.worker.decoding_rules import before_stop
from mafioso.worker.sampling import Sampling
from mafioso.worker.token_stream import StreamText, TokenSink, ready_tokens, variant_safe
from mafioso.core.explanation import Explanation
from mafioso.core.feedback import AnswerRecord, FeedbackStore, FeedbackUnavailable
from mafioso.core.config import WorkerConfig
from mafioso.core.errors import InputRejected, RequestError, WorkerBusy, WorkerTimeout, WorkerUnavailable
from mafioso.prompts import DEFAULT_PERSONA
from mafioso.prompts.lines import line

if TYPE_CHECKING:
    from mafioso.worker.engines import Engine

__all__ = ["ADMIT_HEADROOM", "AnswerStream", "Metrics", "ServiceRate", "StreamEvent", "Worker"]

log = logging.getLogger(__name__)

#: A request is admitted only if, at the measured rate, it is expected to finish within this share of the
#: request timeout: answers vary in length, and one that would just make it on average often would not.
ADMIT_HEADROOM = 0.8
#: Retry-After bounds, in seconds: never "now" (a client would hammer), never more than a minute (the rate
#: can change; a refused client should come back and ask again).
RETRY_MIN_S, RETRY_MAX_S = 1, 60


class ServiceRate:
    """Answers per second of engine work, over the last ``window`` answers.

    Time counts only while the engine holds requests (``in_flight`` > 0), so an idle worker does not look
    slow, and a stuck one looks slower every second it produces nothing. The rate is measured at whatever
    load there was: after a quiet spell (one request at a time) it underestimates what a full batch does,
    which makes admission cautious until a burst's own answers are measured. It says nothing before
    ``min_answers`` answers: rows that start together finish together, and the first of a full batch alone
    would make the rate look ``slots`` times too slow.
    """

    def __init__(self, window: int = 32, clock=time.monotonic, min_answers: int = 1):
        self.window = window
        self.min_answers = max(1, min(min_answers, window))
        self.in_flight = 0
        self._clock = clock
        self._busy_s = 0.0
        self._since = clock()
        self._answered_at: collections.deque[float] = collections.deque(maxlen=window + 1)  # busy seconds

    def _tick(self) -> None:
        now = self._clock()
        if self.in_flight:
            self._busy_s += now - self._since
        self._since = now

    def started(self, requests: int) -> None:
        """``requests`` went to the engine."""
        self._tick()
        self.in_flight += requests

    def finished(self, requests: int, answered: int) -> None:
        """``requests`` came back from the engine, ``answered`` of them with an answer somebody wanted."""
        self._tick()
        self.in_flight -= requests
        self._answered_at.extend([self._busy_s] * answered)

    def rate(self) -> float | None:
        """Answers per busy second, or None before ``min_answers`` answers."""
        self._tick()
        if len(self._answered_at) < self.min_answers:
            return None
        full = len(self._answered_at) > self.window
        span = self._busy_s - (self._answered_at[0] if full else 0.0)
        return (self.window if full else len(self._answered_at)) / span if span > 0 else None


class _DecodeCollector:
    """Prometheus view of an engine's decode-thread counters (``engine.stats``, a
    :class:`mafioso.worker.fast_engine.DecodeStats`), read at every scrape. With continuous batching the worker hands the
    engine one request at a time, so these, not ``mafioso_batch_size``, show how full the GPU's batches are
    (step rows / steps) and whether a step waits for the device or for the host."""

    _COUNTERS = (("decode_steps", "steps", "decode steps run"),
                 ("decode_step_rows", "step_rows", "running rows summed over decode steps"),
                 ("decode_wait_seconds", "wait_s", "time the decode thread waited for the device to finish a step"),
                 ("prefills", "prefills", "prefill batches run"),
                 ("prefill_prompts", "prefill_prompts", "prompts prefilled"),
                 ("prefill_seconds", "prefill_s", "time spent prefilling"),
                 ("engine_idle_seconds", "idle_s", "time the decode thread waited for requests"),
                 ("decode_cancelled_rows", "cancelled", "rows stopped because nobody waited for them any more"))

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self):
        stats = self.engine.stats
        if stats is None:
            return
        for name, field_name, doc in self._COUNTERS:
            yield CounterMetricFamily(f"mafioso_{name}", doc, value=getattr(stats, field_name))


class Metrics:
    """The worker's Prometheus metrics, in a registry of its own (never the global one); ``engine``: also its
    decode-thread counters, where it keeps them."""

    def __init__(self, engine: Engine | None = None) -> None:
        self.registry = CollectorRegistry()
        if engine is not None:
            self.registry.register(_DecodeCollector(engine))
        self.requests = Counter("mafioso_requests", "explain requests by outcome", ["outcome"],
                                registry=self.registry)
        self.queue_depth = Gauge("mafioso_queue_depth", "requests waiting for a batch", registry=self.registry)
        self.batch_size = Histogram("mafioso_batch_size", "requests decoded together",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=self.registry)
        self.tokens = Counter("mafioso_generated_tokens", "tokens generated", registry=self.registry)
        self.latency = Histogram("mafioso_request_latency_seconds", "request to answer, queueing included",
                                 buckets=(0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120), registry=self.registry)
        self.code_leaks = Counter("mafioso_code_leaks", "answers whose code the post-check removed",
                                  registry=self.registry)
        self.truncated = Counter("mafioso_truncated", "answers cut at max_new_tokens or the request's max_tokens",
                                 registry=self.registry)
        self.loops = Counter("mafioso_loops", "answers that looped (ended and cut there unless stop_loops is off)",
                             registry=self.registry)
        # the claim post-check in production: 1 - unsupported / ok answers is eval's "grounded, model alone"
        self.unsupported = Counter("mafioso_unsupported_answers", "answers in which the claim post-check found a "
                                   "claim the code contradicts, in the model's first answer (it drops those "
                                   "sentences, or has the answer decoded again)", registry=self.registry)
        self.dropped = Counter("mafioso_dropped_sentences", "sentences the claim post-check dropped from served "
                               "answers", registry=self.registry)
        self.retried = Counter("mafioso_retried_answers", "answers decoded again from before a sentence the claim "
                               "post-check drops (worker/retry.py)", registry=self.registry)
        self.refused = Counter("mafioso_refused", "requests refused at admission (503 busy with Retry-After): "
                               "queue_full, overloaded (expected past the timeout at the measured rate), "
                               "cold_start (2 x slots in the worker before a round of answers was measured)",
                               ["reason"], registry=self.registry)
        self.cancelled = Counter("mafioso_cancelled", "requests nobody waits for any more (client gone, timed "
                                 "out, a sibling prompt failed), by where they were: queued (never decoded) or "
                                 "decoding (the engine was told to stop their row)", ["stage"],
                                 registry=self.registry)
        self.service_rate = Gauge("mafioso_service_rate", "answers per second of engine work, over the last "
                                  "answers (admission control's measure; 0 before the first)",
                                  registry=self.registry)
        self.in_flight = Gauge("mafioso_in_flight", "requests the engine holds now", registry=self.registry)
        self.first_token = Histogram("mafioso_time_to_first_token_seconds", "request to the engine's first answer "
                                     "token, queueing and prefill included (p50/p95: histogram_quantile)",
                                     buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 1, 2, 4, 8, 15, 30),
                                     registry=self.registry)
        self.ratings = Counter("mafioso_feedback_ratings", "users' ratings of answers since start, by adapter "
                               "and rating (up = 👍, down = 👎)", ["adapter", "rating"], registry=self.registry)


@dataclass(frozen=True)
class StreamEvent:
    """One step of a streamed answer: ``delta`` is text to append; the last event also has ``answer`` (the
    whole :class:`Explanation`), and ``replaced`` when ``delta`` is the whole final text, replacing what was
    sent (a check changed text already shown: :mod:`mafioso.worker.token_stream`)."""

    delta: str
    answer: Explanation | None = None
    replaced: bool = False


class AnswerStream:
    """A streamed answer, admitted: iterate for :class:`StreamEvent` s (the last one carries the answer; errors
    such as WorkerTimeout are raised from the iteration). Leaving the iteration early (``aclose``, the consumer
    cancelled) cancels the request: the engine frees its slot at its next step."""

    def __init__(self, task: asyncio.Task, sink: TokenSink, text: StreamText | None, answer_id: str,
                 persona: str = DEFAULT_PERSONA):
        self._task, self._sink, self._text = task, sink, text
        self.answer_id = answer_id  # the answer's id, known before its text
        self.persona = persona  # whose lines an error in the stream is told in
        self._events = self._run()

    def __aiter__(self):
        return self._events

    async def aclose(self) -> None:
        """Stop the stream; a request still decoding is cancelled."""
        await self._events.aclose()
        await self._cancel()

    async def _cancel(self) -> None:
        if not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self):
        try:
            while not self._task.done():
                waiter = asyncio.ensure_future(self._sink.wait())
                try:
                    await asyncio.wait({self._task, waiter}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
                tokens = self._sink.take()
                if self._text is not None and tokens and (delta := self._text.add(tokens)):
                    yield StreamEvent(delta)
            answer = self._task.result()
            rest, replaced = self._text.finish(answer.text) if self._text else (answer.text, False)
            yield StreamEvent(rest, answer, replaced)
        finally:
            await self._cancel()


@dataclass(eq=False)  # identity equality: the queue removes exactly this job
class _Job:
    code: str
    request: str | None
    future: asyncio.Future
    control: Control
    queued_at: float = field(default_factory=time.monotonic)
    started: bool = False  # handed to the engine
    returned: bool = False  # the engine gave it back (answered or failed)


class Worker:
    """Explains code with a local engine, batching concurrent requests (implements ``Explainer``)."""

    def __init__(self, engine: Engine, cfg: WorkerConfig, *, gather_s: float = 0.005,
                 cold_start_limit: int | None = None,
                 admission: bool = True, feedback: FeedbackStore | None = None):
        """``feedback``: the store every answer is recorded in (none: answers are not kept, ratings refused);
        ``cold_start_limit``: requests in the worker at once before the rate is measured (default 2 x slots);
        ``admission=False``: only the queue size limits what is admitted (the worker before issue 19, for the
        overload bench's comparison)."""
        self.engine = engine
        self.cfg = cfg
        self.metrics = Metrics(engine)
        self.feedback = feedback
        # One batch at a time on one GPU thread, unless the engine schedules the GPU itself (continuous batching):
        # then one request per call, as many calls as it has slots, and the engine groups their prefills.
        continuous = engine.continuous_slots
        self._concurrent_batches = max(1, continuous)
        self._batch_limit = 1 if continuous else cfg.max_batch_size
        self._gather_s = 0.0 if continuous else gather_s  # a short wait lets a burst share the first batch
        self._cold_start_limit = cold_start_limit or 2 * self._concurrent_batches * self._batch_limit
        self._admission = admission
        self.rate = ServiceRate(min_answers=self._concurrent_batches * self._batch_limit)
        self.metrics.service_rate.set_function(lambda: self.rate.rate() or 0.0)
        self.metrics.in_flight.set_function(lambda: self.rate.in_flight)
        self._waiting: collections.deque[_Job] = collections.deque()
        self._wakeup = asyncio.Event()
        self._executor: ThreadPoolExecutor | None = None
        self._scheduler: asyncio.Task | None = None
        self._closing = False

    @property
    def persona(self) -> str:
        """The persona this worker answers in: its engine's (its adapter's), which also speaks its fixed lines."""
        return getattr(self.engine, "persona", None) or DEFAULT_PERSONA

    @property
    def registry(self) -> CollectorRegistry:
        """The Prometheus registry holding this worker's metrics."""
        return self.metrics.registry

    @property
    def queue_depth(self) -> int:
        """Requests waiting for a batch."""
        return len(self._waiting)

    @property
    def max_new_tokens(self) -> int:
        """The engine's longest answer in tokens: the most ``max_tokens`` may ask for."""
        return self.engine.gen.max_new_tokens

    @property
    def accepting(self) -> bool:
        """True while the worker runs and takes new requests."""
        return self._scheduler is not None and not self._closing

    def prompt_tokens(self, code: str, request: str | None = None) -> int:
        """Prompt length in tokens."""
        return self.engine.prompt_tokens(code, request)

    async def start(self) -> None:
        """Start the scheduler and the generation thread."""
        if self._scheduler is not None:
            return
        self._closing = False
        self._executor = ThreadPoolExecutor(max_workers=self._concurrent_batches, thread_name_prefix="mafioso-generate")
        self._scheduler = asyncio.create_task(self._schedule(), name="mafioso-scheduler")

    async def stop(self, drain: bool = True) -> None:
        """Refuse new requests; finish the queued ones (``drain``) or fail them as unavailable."""
        if self._scheduler is None:
            return
        self._closing = True
        log.info("worker stopping: %s %d queued request(s)", "finishing" if drain else "refusing", len(self._waiting))
        if not drain:
            while self._waiting:
                job = self._waiting.popleft()
                if not job.future.done():
                    job.future.set_exception(WorkerUnavailable(line("unavailable", self.persona)))
            self.metrics.queue_depth.set(0)
        self._wakeup.set()
        await self._scheduler
        self._scheduler = None
        self._executor.shutdown(wait=True)
        self._executor = None

    async def stream(self, code: str, request: str | None = None, *, max_tokens: int | None = None,
                     sampling: Sampling | None = None, stop: tuple[str, ...] = ()) -> AnswerStream:
        """Explain ``code`` as a stream of text deltas (:class:`AnswerStream`); returns once the request is
        admitted, raising like :meth:`explain` when it is not."""
        sink = TokenSink(asyncio.get_running_loop())
        answer_id = uuid.uuid4().hex
        task = asyncio.ensure_future(self.explain(code, request, max_tokens=max_tokens, sampling=sampling,
                                                  stop=stop, sink=sink, answer_id=answer_id))
        await asyncio.sleep(0)  # it runs up to its admission (or its refusal)
        if task.done() and task.exception() is not None:
            raise task.exception()
        gen = self.engine.gen
        text = StreamText(lambda ids: before_stop(self.engine.text_so_far(code, ids), stop),  # as explain cuts it
                          ready_tokens(gen), hold=variant_safe if gen.stop_loops else None)
        return AnswerStream(task, sink, text, answer_id, self.persona)

    async def explain(self, code: str, request: str | None = None, *, max_tokens: int | None = None,
                      sampling: Sampling | None = None, stop: tuple[str, ...] = (),
                      sink: TokenSink | None = None, answer_id: str | None = None) -> Explanation:
        """Explain ``code`` in at most ``max_tokens`` tokens (default and most: the engine's ``max_new_tokens``);
        raises InputRejected, WorkerBusy, WorkerTimeout or WorkerUnavailable. ``sampling``: how the answer picks
        its tokens (:mod:`mafioso.worker.sampling`; None: the worker's default); ``stop``: strings that end the
        answer, cut before the first (:mod:`mafioso.worker.decoding_rules`). ``sink``: where the engine puts
        each answer token as it makes it (:meth:`stream` uses it); ``answer_id``: the answer's id (default: a new
        one)."""
        limit = self.max_new_tokens
        if max_tokens is not None and not (1 <= max_tokens <= (limit or max_tokens)):
            raise ValueError(f"max_tokens must be between 1 and {limit}, not {max_tokens}")
        started = time.monotonic()
        outcome = "error"
        try:
            control = Control(max_tokens, sampling, stop, sink=sink)
            result = await self._explain(code, request, control)
            outcome = "ok"
        except InputRejected:
            outcome = "rejected"
            raise
        except WorkerBusy:
            outcome = "busy"
            raise
        except WorkerTimeout:
            outcome = "timeout"
            raise
        except WorkerUnavailable:
            outcome = "unavailable"
            raise
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            self.metrics.requests.labels(outcome).inc()
        latency = time.monotonic() - started
        self.metrics.latency.observe(latency)
        if control.first_token_at is not None:
            self.metrics.first_token.observe(max(0.0, control.first_token_at - started))
        answer = Explanation(text=before_stop(result.text, stop), tokens=result.tokens, latency_s=round(latency, 4),
                             finished=result.finished, code_leak=result.code_leak, dropped=result.dropped,
                             retried=result.retried, answer_id=answer_id or uuid.uuid4().hex)
        if self.feedback is not None:  # in a thread: the event loop never waits on the disk
            await self.feedback.call("record_answer", self._record(code, request, answer, control.decoding(
                self.engine.gen)))
        return answer

    def _record(self, code: str, request: str | None, answer: Explanation, sampling: Sampling) -> AnswerRecord:
        return AnswerRecord(answer.answer_id, code=code, answer=answer.text, request=request,
                            adapter=self.cfg.adapter, base_model=self.cfg.base_model or "embedded",
                            decoding={**dataclasses.asdict(self.engine.gen), **sampling.settings()},
                            latency_s=answer.latency_s, tokens=answer.tokens, dropped=answer.dropped,
                            retried=answer.retried)

    async def rate_answer(self, answer_id: str, rating: int, *, user: object = "anonymous",
                          platform: str = "api") -> None:
        """Store a user's +1/-1 for an answer this worker gave; raises :class:`mafioso.core.feedback.UnknownAnswer`,
        ValueError (not ±1) or :class:`mafioso.core.feedback.FeedbackUnavailable` (no store, or it failed)."""
        if self.feedback is None or not self.feedback.enabled:
            raise FeedbackUnavailable("feedback is off on this worker")
        adapter = await self.feedback.call("rate", answer_id, rating, user, platform)
        if adapter is None:  # the database failed just now (logged once by the store)
            raise FeedbackUnavailable("feedback is off on this worker")
        self.metrics.ratings.labels(adapter, "up" if rating > 0 else "down").inc()

    async def _explain(self, code: str, request: str | None, control: Control):
        if not self.accepting:
            raise WorkerUnavailable(line("unavailable", self.persona))
        code = guard.check(code, request, max_chars=self.cfg.max_input_chars,
                           prompt_tokens=self.engine.prompt_tokens, max_prompt_tokens=self.engine.max_prompt_tokens,
                           persona=self.persona)
        self._admit()
        job = _Job(code, request, asyncio.get_running_loop().create_future(), control)
        self._waiting.append(job)
        self.metrics.queue_depth.set(len(self._waiting))
        self._wakeup.set()
        try:
            return await asyncio.wait_for(job.future, self.cfg.request_timeout)
        except asyncio.TimeoutError:  # the builtin TimeoutError from 3.11 on
            raise WorkerTimeout(line("timeout", self.persona)) from None
        finally:
            if job in self._waiting:  # timed out or cancelled before its batch: free the slot now
                self._waiting.remove(job)
                self.metrics.queue_depth.set(len(self._waiting))
                self.metrics.cancelled.labels("queued").inc()
            elif job.started and not job.returned:  # decoding for nobody: the engine stops its row
                control.cancel()
                self.metrics.cancelled.labels("decoding").inc()

    def _admit(self) -> None:
        """Raise WorkerBusy unless one more request can be answered within the timeout (module docstring)."""
        queued, in_flight = len(self._waiting), self.rate.in_flight
        rate = self.rate.rate()
        if queued >= self.cfg.queue_size:
            reason, excess = "queue_full", 1.0
        elif not self._admission:
            return
        elif rate is None:
            if queued + in_flight < self._cold_start_limit:
                return
            reason, excess = "cold_start", None
        else:
            allowed = ADMIT_HEADROOM * self.cfg.request_timeout * rate  # answers the worker gives in time
            if queued + in_flight + 1 <= allowed:
                return
            reason, excess = "overloaded", queued + in_flight + 1 - allowed
        self.metrics.refused.labels(reason).inc()
        wait = RETRY_MIN_S if rate is None or excess is None else math.ceil(excess / rate)
        raise WorkerBusy(line("busy", self.persona), retry_after=min(RETRY_MAX_S, max(RETRY_MIN_S, wait)))

    def _next_batch(self) -> list[_Job]:
        batch: list[_Job] = []
        while self._waiting and len(batch) < self._batch_limit:
            job = self._waiting.popleft()
            if not job.future.done():
                job.started = True
                batch.append(job)
        self.metrics.queue_depth.set(len(self._waiting))
        if batch:
            self.rate.started(len(batch))
        return batch

    async def _schedule(self) -> None:
        """Take batches off the queue until stopped and drained."""
        running: set[asyncio.Task] = set()
        slots = asyncio.Semaphore(self._concurrent_batches)
        while True:
            if not self._waiting:
                if self._closing:
                    break
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await slots.acquire()  # with one slot: the next batch forms while the current one decodes
            if self._gather_s and len(self._waiting) < self._batch_limit and not self._closing:
                await asyncio.sleep(self._gather_s)
            batch = self._next_batch()
            if not batch:
                slots.release()
                continue
            task = asyncio.create_task(self._run_batch(batch))
            running.add(task)
            task.add_done_callback(lambda done: (running.discard(done), slots.release()))
        await asyncio.gather(*running)

    async def _run_batch(self, batch: list[_Job]) -> None:
        """Decode one batch in the generation thread and hand each caller its answer."""
        self.metrics.batch_size.observe(len(batch))
        pairs = [(job.code, job.request) for job in batch]
        controls = [job.control for job in batch]
        try:
            try:
                results = await asyncio.get_running_loop().run_in_executor(self._executor, self.engine.generate,
                                                                           pairs, controls)
            finally:
                for job in batch:
                    job.returned = True
                self.rate.finished(len(batch), answered=0)
            if len(results) != len(batch):
                raise RuntimeError(f"the engine gave {len(results)} answers for {len(batch)} requests")
        except Exception:  # noqa: BLE001 - one failed batch must not take the worker down
            log.exception("generation failed for a batch of %d", len(batch))
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(RequestError(line("failed", self.persona)))
            return
        self.rate.finished(0, answered=sum(not job.control.cancelled for job in batch))
        for job, result in zip(batch, results, strict=True):
            self.metrics.tokens.inc(result.tokens)  # decoded, even for nobody
            if job.control.cancelled:  # stopped, not an answer: not truncated, looped or leaked
                continue
            if result.code_leak:
                self.metrics.code_leaks.inc()
            if not result.finished:
                self.metrics.truncated.inc()
            if result.looped:
                self.metrics.loops.inc()
            if result.dropped or result.retried:  # a retry is only for an answer that lost a sentence
                self.metrics.unsupported.inc()
                self.metrics.dropped.inc(result.dropped)
            if result.retried:
                self.metrics.retried.inc()
            if not job.future.done():
                job.future.set_result(result)
