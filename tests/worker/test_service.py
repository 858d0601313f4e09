"""The real Worker with a fake engine (batching, limits, shutdown) and with the real tiny-model Engine."""

import asyncio
import threading

import pytest
from prometheus_client import REGISTRY

from mafioso.core.explanation import Explanation
from mafioso.worker.service import ServiceRate, Worker
from mafioso.core.errors import InputRejected, RequestError, WorkerBusy, WorkerTimeout, WorkerUnavailable
from tests.worker.helpers import FakeEngine, worker_config


def metric(worker: Worker, name: str, **labels) -> float:
    """One sample of the worker's registry (0 when absent)."""
    return worker.registry.get_sample_value(name, labels) or 0.0


async def started(engine, cold_start_limit=None, **cfg) -> Worker:
    worker = Worker(engine, worker_config(**cfg), cold_start_limit=cold_start_limit)
    await worker.start()
    return worker


def test_concurrent_requests_share_batches(fake_engine):
    fake_engine.delay = 0.05

    async def main():
        worker = await started(fake_engine)
        answers = await asyncio.gather(*(worker.explain(f"code {i}") for i in range(16)))
        await worker.stop()
        return worker, answers

    worker, answers = asyncio.run(main())
    assert [a.text for a in answers] == [f"explained code {i}" for i in range(16)]
    assert all(isinstance(a, Explanation) and a.tokens == 3 and a.finished for a in answers)
    assert len(fake_engine.batches) < 16 and max(map(len, fake_engine.batches)) > 1
    assert metric(worker, "mafioso_batch_size_count") == len(fake_engine.batches)
    assert metric(worker, "mafioso_batch_size_sum") == 16
    assert metric(worker, "mafioso_requests_total", outcome="ok") == 16
    assert metric(worker, "mafioso_generated_tokens_total") == 48
    assert metric(worker, "mafioso_request_latency_seconds_count") == 16
    assert REGISTRY.get_sample_value("mafioso_requests_total", {"outcome": "ok"}) is None  # own registry


def test_looping_truncated_and_unsupported_answers_are_counted():
    from mafioso.worker.engine import Generation

    class Looping(FakeEngine):
        def generate(self, requests, controls=None):
            return [Generation(text="Capisce?", tokens=30, finished=code != "long", looped=code != "fine",
                               dropped=2 if code == "long" else 0, retried=int(code == "fine"))
                    for code, _ in requests]

    async def main():
        worker = await started(Looping())
        await asyncio.gather(*(worker.explain(code) for code in ("fine", "cut loop", "long")))
        await worker.stop()
        return worker

    worker = asyncio.run(main())
    assert metric(worker, "mafioso_loops_total") == 2 and metric(worker, "mafioso_truncated_total") == 1
    # "fine" lost a sentence first and was decoded again: the model's own answer had an unsupported claim
    assert metric(worker, "mafioso_unsupported_answers_total") == 2
    assert metric(worker, "mafioso_retried_answers_total") == 1
    assert metric(worker, "mafioso_dropped_sentences_total") == 2


def test_an_answer_keeps_what_the_claim_post_check_dropped_and_the_store_records_it(tmp_path):
    from mafioso.core.feedback import FeedbackStore
    from mafioso.worker.engine import Generation

    class Checked(FakeEngine):
        def generate(self, requests, controls=None):
            return [Generation(text="It adds, pal.", tokens=5, finished=True, dropped=len(code) - 1,
                               retried=int(code == "y")) for code, _ in requests]

    store = FeedbackStore.open(tmp_path / "feedback.sqlite3")

    async def main():
        worker = Worker(Checked(), worker_config(), feedback=store)
        await worker.start()
        answers = [await worker.explain(code) for code in ("x", "abc", "y")]
        await worker.stop()
        return answers

    answers = asyncio.run(main())
    assert [a.dropped for a in answers] == [0, 2, 0] and [a.retried for a in answers] == [0, 0, 1]
    # found a claim the code contradicts: dropped a sentence, or decoded the answer again from before one
    assert [found for _, _, found in store.checked_answers()] == [0, 1, 1]


def test_batches_never_exceed_max_batch_size(fake_engine):
    fake_engine.delay = 0.02

    async def main():
        worker = await started(fake_engine, max_batch_size=4, cold_start_limit=16)
        await asyncio.gather(*(worker.explain(f"c{i}") for i in range(10)))
        await worker.stop()

    asyncio.run(main())
    assert max(map(len, fake_engine.batches)) == 4 and len(fake_engine.seen()) == 10


def test_a_continuous_batching_engine_gets_each_request_alone_up_to_its_slots():
    gate = threading.Event()
    engine = FakeEngine(gate=gate)
    engine.continuous_slots = 2

    async def main():
        worker = await started(engine, max_batch_size=64)
        tasks = [asyncio.create_task(worker.explain(f"c{i}")) for i in range(3)]
        for _ in range(500):
            if len(engine.batches) == 2:
                break
            await asyncio.sleep(0.01)
        in_flight, queued = len(engine.batches), worker.queue_depth
        gate.set()
        await asyncio.gather(*tasks)
        await worker.stop()
        return in_flight, queued

    assert asyncio.run(main()) == (2, 1)
    assert sorted(engine.seen()) == ["c0", "c1", "c2"] and all(len(batch) == 1 for batch in engine.batches)


def test_full_queue_is_refused_at_once():
    gate = threading.Event()
    engine = FakeEngine(gate=gate)

    async def main():
        worker = await started(engine, max_batch_size=1, queue_size=2, cold_start_limit=8)
        first = asyncio.create_task(worker.explain("running"))
        await asyncio.to_thread(engine.started.wait, 5)
        queued = [asyncio.create_task(worker.explain(f"queued {i}")) for i in range(2)]
        await asyncio.sleep(0.01)
        assert worker.queue_depth == 2
        with pytest.raises(WorkerBusy, match="boss"):
            await worker.explain("one too many")
        gate.set()
        await asyncio.gather(first, *queued)
        await worker.stop()
        return worker

    worker = asyncio.run(main())
    assert metric(worker, "mafioso_requests_total", outcome="busy") == 1
    assert metric(worker, "mafioso_requests_total", outcome="ok") == 3
    assert engine.seen() == ["running", "queued 0", "queued 1"]


def test_timeout_and_cancellation_free_the_slot():
    gate = threading.Event()
    engine = FakeEngine(gate=gate)

    async def main():
        worker = await started(engine, max_batch_size=1, queue_size=1, request_timeout=0.2)
        running = asyncio.create_task(worker.explain("running"))
        await asyncio.to_thread(engine.started.wait, 5)
        with pytest.raises(WorkerTimeout, match="cannoli"):
            await worker.explain("waits too long")  # queued behind the gate, then times out
        assert worker.queue_depth == 0  # its slot is free again
        cancelled = asyncio.create_task(worker.explain("cancelled"))
        await asyncio.sleep(0.01)
        assert worker.queue_depth == 1
        cancelled.cancel()
        await asyncio.sleep(0.01)
        assert worker.queue_depth == 0
        gate.set()
        with pytest.raises(WorkerTimeout):
            await running  # its batch started but the answer came too late
        worker.cfg.request_timeout = 5.0
        assert (await worker.explain("after")).text == "explained after"
        await worker.stop()
        return worker

    worker = asyncio.run(main())
    assert engine.seen() == ["running", "after"]  # the timed-out and cancelled requests never ran
    assert metric(worker, "mafioso_requests_total", outcome="timeout") == 2
    assert metric(worker, "mafioso_requests_total", outcome="cancelled") == 1


@pytest.mark.parametrize("drain", [True, False])
def test_stop_drains_or_refuses_but_never_drops(drain):
    gate = threading.Event()
    engine = FakeEngine(gate=gate)

    async def main():
        worker = await started(engine, max_batch_size=1, cold_start_limit=8)
        tasks = [asyncio.create_task(worker.explain(f"c{i}")) for i in range(3)]
        await asyncio.to_thread(engine.started.wait, 5)
        stopping = asyncio.create_task(worker.stop(drain=drain))
        await asyncio.sleep(0.01)
        with pytest.raises(WorkerUnavailable):
            await worker.explain("too late")
        gate.set()
        await stopping
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(main())
    assert isinstance(results[0], Explanation)  # the running batch always finishes
    for result in results[1:]:
        assert isinstance(result, Explanation) if drain else isinstance(result, WorkerUnavailable)


def test_guard_and_engine_failures_are_request_errors():
    engine = FakeEngine(fail=True)

    async def main():
        worker = await started(engine, max_input_chars=100)
        with pytest.raises(InputRejected) as caught:
            await worker.explain("   ")
        assert caught.value.reason == "empty"
        with pytest.raises(InputRejected):
            await worker.explain("x" * 101)
        with pytest.raises(RequestError, match="back room"):
            await worker.explain("print(1)")
        engine.fail = False
        assert (await worker.explain("print(1)")).text == "explained print(1)"  # the worker survived
        await worker.stop()
        return worker

    worker = asyncio.run(main())
    assert metric(worker, "mafioso_requests_total", outcome="rejected") == 2
    assert metric(worker, "mafioso_requests_total", outcome="error") == 1
    assert engine.seen() == ["print(1)", "print(1)"]


def test_real_engine_batches_concurrent_requests(engine):
    async def main():
        worker = Worker(engine, worker_config(base_model="unused"))
        await worker.start()
        codes = [f"def f{i}(x):\n    return x + {i}" for i in range(16)]
        answers = await asyncio.gather(*(worker.explain(code) for code in codes))
        with pytest.raises(InputRejected):  # the engine's context check
            await worker.explain("x = 1\n" * 900)
        await worker.stop()
        return worker, answers

    worker, answers = asyncio.run(main())
    assert len(answers) == 16 and all(1 <= a.tokens <= 8 for a in answers)
    assert metric(worker, "mafioso_batch_size_count") < 16
    assert metric(worker, "mafioso_generated_tokens_total") == sum(a.tokens for a in answers)


class Clock:
    """A hand-driven monotonic clock for ServiceRate."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_service_rate_counts_only_busy_time_and_the_last_answers():
    clock = Clock()
    rate = ServiceRate(window=4, clock=clock)
    assert rate.rate() is None  # nothing measured yet
    rate.started(2)
    clock.now = 1.0
    rate.finished(2, answered=2)
    assert rate.rate() == 2.0
    clock.now = 100.0  # idle: does not count
    assert rate.rate() == 2.0
    rate.started(1)
    clock.now = 104.0  # stuck on one request: the rate falls while nothing comes back
    assert rate.rate() == 2 / 5
    rate.finished(1, answered=0)  # failed or cancelled: no answer
    assert rate.rate() == 2 / 5
    for _ in range(5):  # the window forgets the old answers
        rate.started(1)
        clock.now += 0.25
        rate.finished(1, answered=1)
    assert rate.rate() == 4.0


def test_admission_refuses_at_once_what_could_not_finish_in_time():
    """Issue 19 item 11: the queue took work it could not finish (16 of 64 got 504 after 120 s)."""
    engine = FakeEngine(delay=0.05)

    async def main():
        worker = await started(engine, max_batch_size=1, request_timeout=30)
        for i in range(4):  # measured: ~20 answers/s, so ~8 fit in 0.8 x 0.5 s
            await worker.explain(f"warm {i}")
        worker.cfg.request_timeout = 0.5
        t0 = asyncio.get_running_loop().time()

        async def ask(i):
            try:
                return await worker.explain(f"c{i}")
            except WorkerBusy as exc:
                return exc, asyncio.get_running_loop().time() - t0

        results = await asyncio.gather(*(ask(i) for i in range(24)))
        answer = await worker.explain("afterwards")  # the worker is fine
        await worker.stop()
        return worker, results, answer

    worker, results, answer = asyncio.run(main())
    refused = [r for r in results if isinstance(r, tuple)]
    answered = [r for r in results if isinstance(r, Explanation)]
    assert len(answered) + len(refused) == 24  # no timeouts, nothing lost
    assert 4 <= len(answered) <= 12 and refused
    assert all(seconds < 0.05 and exc.retry_after >= 1 for exc, seconds in refused)  # refused at once
    assert metric(worker, "mafioso_requests_total", outcome="timeout") == 0
    assert metric(worker, "mafioso_refused_total", reason="overloaded") == len(refused)
    assert 10 < metric(worker, "mafioso_service_rate") < 25
    assert answer.text == "explained afterwards"


def test_retry_after_is_computed_from_the_measured_rate():
    clock = Clock()
    gate = threading.Event()
    engine = FakeEngine(gate=gate)

    async def main():
        worker = await started(engine, max_batch_size=1, request_timeout=30)
        worker.rate = ServiceRate(clock=clock)
        worker.rate.started(1)
        clock.now = 10.0
        worker.rate.finished(1, answered=1)  # 0.1 answers/s: 2.4 answers fit in 0.8 x 30 s
        tasks = [asyncio.create_task(worker.explain(f"c{i}")) for i in range(2)]
        await asyncio.to_thread(engine.started.wait, 5)
        with pytest.raises(WorkerBusy) as caught:
            await worker.explain("third")
        gate.set()
        await asyncio.gather(*tasks)
        await worker.stop()
        return worker, caught.value

    worker, busy = asyncio.run(main())
    assert busy.retry_after == 6  # (3 - 2.4) answers at 0.1 answers/s
    assert metric(worker, "mafioso_refused_total", reason="overloaded") == 1


def test_before_anything_is_measured_two_rounds_of_slots_are_admitted():
    gate = threading.Event()
    engine = FakeEngine(gate=gate)

    async def main():
        worker = await started(engine, max_batch_size=2)
        tasks = [asyncio.create_task(worker.explain(f"c{i}")) for i in range(4)]
        await asyncio.to_thread(engine.started.wait, 5)
        with pytest.raises(WorkerBusy) as caught:
            await worker.explain("fifth")
        gate.set()
        answers = await asyncio.gather(*tasks)
        await worker.explain("now measured")  # the rate is known: admission by rate from here
        await worker.stop()
        return worker, answers, caught.value

    worker, answers, busy = asyncio.run(main())
    assert len(answers) == 4 and busy.retry_after == 1
    assert metric(worker, "mafioso_refused_total", reason="cold_start") == 1


def test_max_tokens_is_honoured_per_request():
    """Issue 19 item 7: max_tokens was accepted and ignored."""
    engine = FakeEngine(tokens=10, max_new_tokens=50)

    async def main():
        worker = await started(engine)
        short, full = await asyncio.gather(worker.explain("a", max_tokens=4), worker.explain("b"))
        with pytest.raises(ValueError, match="between 1 and 50"):
            await worker.explain("c", max_tokens=51)
        await worker.stop()
        return worker, short, full

    worker, short, full = asyncio.run(main())
    assert (short.tokens, short.finished) == (4, False) and (full.tokens, full.finished) == (10, True)
    assert metric(worker, "mafioso_truncated_total") == 1


def test_a_request_that_times_out_while_decoding_stops_its_row():
    """Issue 19 item 6: a request that got 504 kept decoding to the end."""
    engine = FakeEngine(tokens=500, token_delay=0.01)

    async def main():
        worker = await started(engine, request_timeout=0.3)
        with pytest.raises(WorkerTimeout):
            await worker.explain("long")
        for _ in range(100):
            if engine.cancelled:
                break
            await asyncio.sleep(0.01)
        worker.cfg.request_timeout = 5
        engine.tokens = 3
        after = await worker.explain("next")  # the slot is free at once
        await worker.stop()
        return worker, after

    worker, after = asyncio.run(main())
    assert engine.cancelled == 1 and engine.decoded < 100  # 500 before the fix
    assert metric(worker, "mafioso_cancelled_total", stage="decoding") == 1
    assert metric(worker, "mafioso_truncated_total") == 0  # stopped for nobody is not an answer cut short
    assert after.text == "explained next"


def test_a_cancelled_caller_stops_its_row_and_its_batch_ends_with_its_last_live_row():
    engine = FakeEngine(tokens=500, token_delay=0.01)

    async def main():
        worker = await started(engine, max_batch_size=4)
        tasks = [asyncio.create_task(worker.explain(f"c{i}")) for i in range(3)]
        await asyncio.to_thread(engine.started.wait, 5)
        await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        answer = await asyncio.wait_for(worker.explain("next", max_tokens=2), 2)
        await worker.stop()
        return worker, answer

    worker, answer = asyncio.run(main())
    assert engine.cancelled == 3 and engine.decoded < 3 * 100
    assert metric(worker, "mafioso_cancelled_total", stage="decoding") == 3
    assert metric(worker, "mafioso_requests_total", outcome="cancelled") == 3
    assert answer.tokens == 2


def test_without_admission_control_only_the_queue_bounds_what_is_taken():
    gate = threading.Event()
    engine = FakeEngine(gate=gate)

    async def main():
        worker = Worker(engine, worker_config(max_batch_size=1, queue_size=3), admission=False)
        await worker.start()
        tasks = [asyncio.create_task(worker.explain("running"))]
        await asyncio.to_thread(engine.started.wait, 5)
        tasks += [asyncio.create_task(worker.explain(f"c{i}")) for i in range(3)]  # 2 x slots is no limit
        await asyncio.sleep(0.01)
        with pytest.raises(WorkerBusy):
            await worker.explain("the queue is full")
        gate.set()
        answers = await asyncio.gather(*tasks)
        await worker.stop()
        return answers

    assert len(asyncio.run(main())) == 4


def test_the_rate_waits_for_a_round_of_answers():
    """Rows that start together finish together: the first answer of a full batch alone looked 16x too slow
    (the overload bench saw Retry-After 17 s at 1 s per answer)."""
    clock = Clock()
    rate = ServiceRate(clock=clock, min_answers=4)
    rate.started(4)
    clock.now = 1.0
    rate.finished(1, answered=1)
    assert rate.rate() is None
    rate.finished(3, answered=3)
    assert rate.rate() == 4.0
