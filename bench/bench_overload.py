"""Overload: drive the worker past saturation and count what became of every request (issue 19).

    python bench/bench_overload.py                                  # stand-in engine, 4x capacity, 60 s
    python bench/bench_overload.py --load 4 --seconds 30 --timeout 10 --slots 16 --tokens 50 --token-ms 20
    python bench/bench_overload.py --burst 64 --tokens 50 --token-ms 80 --timeout 12   # issue 19's burst, 1/10 scale
    python bench/bench_overload.py --engine real --base-model embedded --adapter none --capacity 0.5

The worker is the real one: :class:`mafioso.worker.service.Worker` behind :mod:`mafioso.worker.http_api` on loopback, with its
admission control, Retry-After and cancellation. The engine is, by default, a stand-in with continuous batching
and a fixed per-token delay: ``--slots`` answers decode at once, each token takes ``--token-ms``, every answer
is ``--tokens`` long, so the capacity is exactly ``slots / (tokens x token_ms)`` answers per second and the
figures show the worker, not the model. ``--engine real`` loads a model instead (then say its capacity with
``--capacity``, answers per second, measured with bench/bench_worker.py).

Requests arrive open-loop (Poisson, fixed seed) at ``--load`` x capacity for ``--seconds``; a refused client
does not retry; ``--burst N`` sends N requests at once instead (a fresh worker hit by N clients). Every request
ends as one of: answered (200), refused (503 busy, with Retry-After), timed out
(504), or lost (anything else: another status, a connection error, or no answer within the timeout + 5 s).
Lost must be 0; timed out should be 0 (refused early instead). ``--admission off`` runs the same load
against a worker that only bounds its queue, as before issue 19. Prints a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import platform
import random
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from mafioso.core.config import GenerationConfig, WorkerConfig  # noqa: E402

SNIPPET = "def add(a, b):\n    return a + b\n\nprint(add(2, 3))"


class PacedEngine:
    """A stand-in engine with continuous batching: ``slots`` answers at once, each ``tokens`` long at one token
    per ``token_s``; it honours each request's Control (max_tokens, cancel) between tokens like the real ones."""

    def __init__(self, slots: int, tokens: int, token_s: float):
        self.continuous_slots, self.tokens, self.token_s = slots, tokens, token_s
        self.gen = GenerationConfig(max_new_tokens=max(tokens, 1))
        self.max_prompt_tokens, self.stats = 1 << 30, None  # the Engine protocol: no context limit, no counters
        self.decoded = 0
        self._lock = threading.Lock()

    def prompt_tokens(self, code: str, request: str | None = None) -> int:
        """About one token a word."""
        return len(code.split()) + len((request or "").split())

    def text_so_far(self, code: str, ids: list[int]) -> str:
        """Nothing until the answer is whole (the bench never streams)."""
        return ""

    def close(self) -> None:
        """Nothing to release."""

    def generate(self, requests, controls):
        from mafioso.worker.engine import Generation

        answers = []
        for (code, _), control in zip(requests, controls, strict=True):
            limit, done = min(self.tokens, control.limit(self.gen.max_new_tokens)), 0
            deadline = time.monotonic()
            while done < limit and not control.cancelled:
                deadline += self.token_s
                time.sleep(max(0.0, deadline - time.monotonic()))  # paced: no drift from sleep overshoot
                done += 1
            with self._lock:
                self.decoded += done
            answers.append(Generation(text=f"Listen up, pal: {len(code)} characters.", tokens=done,
                                      finished=done >= self.tokens))
        return answers


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engine", choices=("paced", "real"), default="paced")
    parser.add_argument("--slots", type=int, default=16, help="paced engine: answers decoded at once")
    parser.add_argument("--tokens", type=int, default=50, help="paced engine: tokens per answer")
    parser.add_argument("--token-ms", type=float, default=20.0, help="paced engine: milliseconds per token")
    parser.add_argument("--capacity", type=float, default=0.0, help="real engine: answers per second it serves")
    parser.add_argument("--base-model", default="embedded", help="real engine: as for mafioso worker")
    parser.add_argument("--adapter", default="none", help="real engine: adapter folder, 'default' or 'none'")
    parser.add_argument("--load", type=float, default=4.0, help="arrival rate as a multiple of capacity")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long requests arrive")
    parser.add_argument("--burst", type=int, default=0, help="send this many requests at once instead")
    parser.add_argument("--timeout", type=float, default=10.0, help="the worker's request timeout (s)")
    parser.add_argument("--queue-size", type=int, default=256, help="the worker's queue size")
    parser.add_argument("--admission", choices=("on", "off"), default="on",
                        help="off: only the queue size limits admission (the worker before issue 19)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.engine == "real" and args.capacity <= 0:
        parser.error("--engine real needs --capacity (answers per second, from bench/bench_worker.py)")
    return args


def build(args: argparse.Namespace):
    """(engine, worker settings, capacity in answers per second)."""
    cfg = WorkerConfig(adapter=args.adapter, base_model=args.base_model if args.engine == "real" else "",
                       device="cpu", request_timeout=args.timeout, queue_size=args.queue_size,
                       max_batch_size=args.slots)
    if args.engine == "paced":
        engine = PacedEngine(args.slots, args.tokens, args.token_ms / 1000)
        return engine, cfg, args.slots / (args.tokens * args.token_ms / 1000)
    from mafioso.worker.engines import load_engine

    return load_engine(cfg, GenerationConfig()), cfg, args.capacity


def percentiles(values: list[float]) -> dict:
    """p50 and p95 in seconds (None when empty)."""
    if not values:
        return {"p50": None, "p95": None}
    if len(values) == 1:
        return {"p50": round(values[0], 3), "p95": round(values[0], 3)}
    cuts = statistics.quantiles(values, n=20, method="inclusive")
    return {"p50": round(statistics.median(values), 3), "p95": round(cuts[18], 3)}


async def drive(args: argparse.Namespace) -> dict:
    """Serve the worker on loopback, send the open-loop load, and count the outcomes."""
    import aiohttp
    from aiohttp import web

    from mafioso.worker.http_api import RUNNER_OPTIONS, make_app
    from mafioso.worker.service import Worker

    engine, cfg, capacity = build(args)
    worker = Worker(engine, cfg, admission=args.admission == "on")
    runner = web.AppRunner(make_app(worker, cfg), **RUNNER_OPTIONS)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = "http://127.0.0.1:%d/v1/explain" % runner.addresses[0][1]
    outcomes: dict[str, list[float]] = collections.defaultdict(list)
    retry_after: list[int] = []
    rate = args.load * capacity
    rng = random.Random(args.seed)

    async def one(http: aiohttp.ClientSession) -> None:
        started = time.monotonic()
        try:
            async with http.post(url, json={"code": SNIPPET}) as r:
                await r.read()
                status = r.status
                if status == 503:
                    retry_after.append(int(r.headers.get("Retry-After", "0")))
        except (aiohttp.ClientError, asyncio.TimeoutError):
            status = 0
        kind = {200: "answered", 503: "refused", 504: "timed_out"}.get(status, "lost")
        outcomes[kind].append(time.monotonic() - started)

    timeout = aiohttp.ClientTimeout(total=args.timeout + 5)
    started = time.monotonic()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as http:
        tasks, at = [], started
        while not args.burst and at - started < args.seconds:
            at += rng.expovariate(rate)
            await asyncio.sleep(max(0.0, at - time.monotonic()))
            tasks.append(asyncio.create_task(one(http)))
        tasks += [asyncio.create_task(one(http)) for _ in range(args.burst)]
        await asyncio.gather(*tasks)
    wall = time.monotonic() - started
    sample = worker.registry.get_sample_value
    refused = {reason: int(sample("mafioso_refused_total", {"reason": reason}) or 0)
               for reason in ("queue_full", "overloaded", "cold_start")}
    cancelled = {stage: int(sample("mafioso_cancelled_total", {"stage": stage}) or 0)
                 for stage in ("queued", "decoding")}
    service_rate = worker.rate.rate() or 0.0
    await runner.cleanup()
    if hasattr(engine, "close"):
        engine.close()
    sent = len(tasks)
    return {
        "engine": (f"paced: {args.slots} slots x {args.tokens} tokens x {args.token_ms:g} ms" if args.engine == "paced"
                   else f"real: {args.base_model}, adapter {args.adapter}"),
        "admission": args.admission, "capacity_per_s": round(capacity, 2), "load": args.load,
        "arrival_per_s": round(rate, 2),
        "seconds": 0 if args.burst else args.seconds, "burst": args.burst, "timeout_s": args.timeout, "sent": sent,
        **{kind: len(outcomes[kind]) for kind in ("answered", "refused", "timed_out", "lost")},
        "answered_per_s": round(len(outcomes["answered"]) / wall, 2), "wall_s": round(wall, 1),
        "answered_latency_s": percentiles(outcomes["answered"]), "refused_latency_s": percentiles(outcomes["refused"]),
        "timed_out_latency_s": percentiles(outcomes["timed_out"]),
        "retry_after_s": {"min": min(retry_after, default=None), "max": max(retry_after, default=None)},
        "refused_by_reason": refused, "cancelled": cancelled, "measured_service_rate": round(service_rate, 2),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
    }


def main(argv: list[str] | None = None) -> int:
    """Run the bench; prints a table and a JSON line."""
    args = parse_args(argv)
    result = asyncio.run(drive(args))
    load = (f"a burst of {result['burst']}" if result["burst"] else
            f"arrivals {result['arrival_per_s']}/s ({result['load']:g}x) for {result['seconds']:g} s")
    print(f"admission {result['admission']}; engine {result['engine']}: capacity {result['capacity_per_s']}/s, "
          f"{load}, request timeout {result['timeout_s']:g} s")
    print(f"{'outcome':<10} {'count':>6} {'p50 s':>8} {'p95 s':>8}")
    for kind, key in (("answered", "answered_latency_s"), ("refused", "refused_latency_s"),
                      ("timed_out", "timed_out_latency_s"), ("lost", None)):
        p = result[key] if key else {"p50": None, "p95": None}
        print(f"{kind:<10} {result[kind]:>6} {p['p50'] if p['p50'] is not None else '-':>8} "
              f"{p['p95'] if p['p95'] is not None else '-':>8}")
    print(f"answered {result['answered_per_s']}/s; refused by reason {result['refused_by_reason']}; "
          f"Retry-After {result['retry_after_s']}; cancelled {result['cancelled']}; "
          f"measured service rate {result['measured_service_rate']}/s")
    print(json.dumps(result))
    return 0 if result["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
