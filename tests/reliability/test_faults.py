"""Faults against the real worker HTTP app on loopback (issue 19): a slow, failing or broken engine, a full or
overloaded or stopped worker, clients that hang up, stall mid-body or speak broken HTTP. Each case asserts the
exact status and error code, and that a good request right after it is answered (the process survived).

A case is an async function ``(url, worker, engine, http) -> (status, error code, headers)`` registered with
the worker settings and engine it needs; the table is ``FAULTS``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Awaitable, Callable

import aiohttp
import pytest

from mafioso.worker.service import Worker
from tests.worker.helpers import FakeEngine, serving, worker_config


@dataclass(frozen=True)
class Fault:
    """One fault, the answer it must get, and what the worker must show in its metrics afterwards."""

    name: str
    run: Callable[..., Awaitable[tuple[int, str | None, dict]]]
    status: int
    code: str | None
    cfg: dict = field(default_factory=dict)
    engine: dict = field(default_factory=dict)  # FakeEngine arguments
    metrics: dict = field(default_factory=dict)  # (name, label value) -> at least this value


FAULTS: list[Fault] = []


def fault(status: int, code: str | None, *, cfg=None, engine=None, metrics=None):
    """Register the decorated scenario in FAULTS."""
    def register(run):
        FAULTS.append(Fault(run.__name__.replace("_", " "), run, status, code, cfg or {}, engine or {},
                            metrics or {}))
        return run
    return register


async def post(http, url: str, path: str = "/v1/explain", **body) -> tuple[int, str | None, dict]:
    async with http.post(url + path, json=body or {"code": "x = 1"}) as r:
        data = await r.json()
        return r.status, (data.get("error") or {}).get("code"), dict(r.headers)


async def raw(url: str, data: bytes, read_timeout: float = 5.0) -> int:
    """Send raw bytes; the status of whatever comes back (0: the connection closed without an answer)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(data)
    await writer.drain()
    try:
        head = await asyncio.wait_for(reader.readline(), read_timeout)
    finally:
        writer.close()
    return int(head.split()[1]) if head.startswith(b"HTTP/") else 0


async def wait_until(condition, seconds: float = 3.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never held")


# ------------------------------------------------------------------------------------------ the engine


@fault(504, "timeout", cfg={"request_timeout": 0.3}, engine={"tokens": 1000, "token_delay": 0.01},
       metrics={("mafioso_cancelled_total", "decoding"): 1})
async def a_slow_engine_times_out_and_its_row_is_stopped(url, worker, engine, http):
    answer = await post(http, url)
    await wait_until(lambda: engine.cancelled == 1)
    assert engine.decoded < 200
    engine.tokens = 3
    return answer


@fault(500, "server_error", engine={"fail": True})
async def a_failing_engine(url, worker, engine, http):
    answer = await post(http, url)
    engine.fail = False
    return answer


@fault(500, "server_error")
async def an_engine_that_gives_the_wrong_number_of_answers(url, worker, engine, http):
    real = engine.generate
    engine.generate = lambda requests, controls=None: real(requests, controls) * 2
    answer = await post(http, url)
    engine.generate = real
    return answer


@fault(500, "server_error")
async def a_tokenizer_that_raises(url, worker, engine, http):
    """A bug outside the worker's own errors was a plain-text 500 ('Server got itself in trouble')."""
    def broken(code, request):
        raise RuntimeError("tokenizer exploded")

    real = engine.prompt_tokens, engine.max_prompt_tokens
    engine.prompt_tokens, engine.max_prompt_tokens = broken, 100
    answer = await post(http, url)
    engine.prompt_tokens, engine.max_prompt_tokens = real
    return answer


# ------------------------------------------------------------------------------------------ the worker


@fault(503, "busy", cfg={"max_batch_size": 1, "queue_size": 1}, engine={"tokens": 1000, "token_delay": 0.005},
       metrics={("mafioso_refused_total", "queue_full"): 1})
async def a_full_queue(url, worker, engine, http):
    running = asyncio.create_task(post(http, url))
    await wait_until(lambda: worker.rate.in_flight == 1)
    queued = asyncio.create_task(post(http, url))
    await wait_until(lambda: worker.queue_depth == 1)
    answer = await post(http, url)
    assert answer[2]["Retry-After"] == "1"
    running.cancel(), queued.cancel()
    await asyncio.gather(running, queued, return_exceptions=True)
    await wait_until(lambda: worker.rate.in_flight == 0 and worker.queue_depth == 0)
    engine.tokens = 3
    return answer


@fault(503, "busy", cfg={"max_batch_size": 1, "request_timeout": 0.5}, engine={"delay": 0.05},
       metrics={("mafioso_refused_total", "overloaded"): 1})
async def more_than_the_measured_rate_finishes_in_time(url, worker, engine, http):
    for _ in range(3):
        await post(http, url)  # measured: ~20 answers/s; ~8 fit in 0.8 x 0.5 s
    answers = await asyncio.gather(*(post(http, url) for _ in range(20)))
    statuses = sorted(status for status, _, _ in answers)
    assert 200 in statuses and 504 not in statuses
    busy = next(a for a in answers if a[0] == 503)
    assert int(busy[2]["Retry-After"]) >= 1
    return busy


@fault(503, "busy", cfg={"max_batch_size": 1}, engine={"tokens": 1000, "token_delay": 0.005},
       metrics={("mafioso_cancelled_total", "decoding"): 1, ("mafioso_cancelled_total", "queued"): 1})
async def a_prompt_list_past_capacity_cancels_its_siblings(url, worker, engine, http):
    answer = await post(http, url, "/v1/completions", prompt=[f"x = {i}" for i in range(50)])
    assert worker.queue_depth == 0
    await wait_until(lambda: worker.rate.in_flight == 0)
    assert engine.decoded < 500
    engine.tokens = 3
    return answer


@fault(503, "unavailable")
async def a_stopped_worker(url, worker, engine, http):
    await worker.stop()
    answer = await post(http, url)
    await worker.start()
    return answer


# ---------------------------------------------------------------------------------------- the client


@fault(200, None, engine={"tokens": 1000, "token_delay": 0.01}, metrics={("mafioso_cancelled_total", "decoding"): 1,
                                                                         ("mafioso_requests_total", "cancelled"): 1})
async def a_client_that_hangs_up_mid_answer(url, worker, engine, http):
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.2)) as impatient:
        with pytest.raises(asyncio.TimeoutError):
            await post(impatient, url)
    await wait_until(lambda: engine.cancelled == 1)
    assert engine.decoded < 200
    engine.tokens = 3
    return 200, None, {}


@fault(200, None, cfg={"max_batch_size": 4}, engine={"tokens": 1000, "token_delay": 0.01},
       metrics={("mafioso_requests_total", "cancelled"): 4})
async def a_client_that_hangs_up_on_a_prompt_list(url, worker, engine, http):
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.3)) as impatient:
        with pytest.raises(asyncio.TimeoutError):
            await post(impatient, url, "/v1/completions", prompt=[f"x = {i}" for i in range(4)])
    await wait_until(lambda: worker.rate.in_flight == 0 and engine.cancelled == 4)
    assert engine.decoded < 4 * 100
    engine.tokens = 3
    return 200, None, {}


@fault(408, "request_timeout", cfg={"request_timeout": 0.3})
async def a_client_that_stops_mid_body(url, worker, engine, http):
    """It held its handler forever before: nothing bounded the body's arrival."""
    return await raw(url, b"POST /v1/explain HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Content-Length: 100\r\n\r\n{\"code\": "), "request_timeout", {}


@fault(400, None)
async def a_header_over_8k(url, worker, engine, http):
    return await raw(url, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n"), None, {}


@fault(400, None)
async def a_broken_request_line(url, worker, engine, http):
    return await raw(url, b"BLAH\r\n\r\n"), None, {}


@fault(400, None)
async def a_content_length_that_is_not_a_number(url, worker, engine, http):
    return await raw(url, b"POST /v1/explain HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"), None, {}


@fault(200, None)
async def a_hundred_connections_opened_and_dropped(url, worker, engine, http):
    host, port = url.removeprefix("http://").split(":")
    for _ in range(100):
        _, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST /v1/explain HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{")
        writer.close()
    return 200, None, {}


@fault(413, "too_large")
async def a_chat_message_of_60_000_backticks_is_refused_at_once(url, worker, engine, http):
    """The chat fence split was a backtracking regex: 32,000 backticks held the event loop 1.4 s."""
    started = asyncio.get_running_loop().time()
    answer = await post(http, url, "/v1/chat/completions",
                        messages=[{"role": "user", "content": "x = 1 " + "`" * 60_000}])
    assert asyncio.get_running_loop().time() - started < 1.0
    return answer


@pytest.mark.parametrize("case", FAULTS, ids=[f.name for f in FAULTS])
def test_a_fault_gets_its_exact_answer_and_the_worker_survives(case):
    async def main():
        engine = FakeEngine(**case.engine)
        cfg = worker_config(max_input_chars=12_000, **case.cfg)
        worker = Worker(engine, cfg)
        async with serving(worker, cfg) as url, aiohttp.ClientSession() as http:
            status, code, _ = await case.run(url, worker, engine, http)
            worker.cfg.request_timeout = 5.0
            survived = await post(http, url, code="print('still here')")
            return status, code, survived, worker

    status, code, survived, worker = asyncio.run(main())
    assert (status, code) == (case.status, case.code)
    assert survived[0] == 200
    for (name, label), at_least in case.metrics.items():
        key = "stage" if name == "mafioso_cancelled_total" else "reason" if name == "mafioso_refused_total" \
            else "outcome"
        assert (worker.registry.get_sample_value(name, {key: label}) or 0) >= at_least, name


def test_the_faults_and_requests_make_more_than_forty_cases():
    from tests.reliability.test_requests import CASES

    assert len(FAULTS) >= 15 and len(FAULTS) + len(CASES) >= 40
