"""The fast engine's host work per decode step: the Python of its decode thread between two device steps.

    python bench/bench_host.py                                  # 64 rows, grounded decoding on and off
    python bench/bench_host.py --rows 64 --tokens 200 --profile 25   # and the costliest functions (cProfile)
    python bench/bench_host.py --simulate 1.1 --base-model DIR        # a GPU's 1.1 ms step against request work
    python bench/bench_host.py --stand-in 1.3 --base-model DIR        # the whole worker on a 1.3 ms stand-in device

On a GPU the decode thread launches a step (a CUDA-graph replay), reads the last step's tokens and then does
host work for every row: record the token, the stop rules, the bans for the next step. Without lookahead the
device idles through all of it; with lookahead it runs the next step meanwhile. This bench measures that host
work on the CPU, apart from the model's maths: a FastEngine on the tiny random Gemma 3 of tests/tiny_models.py
(its final norm's signs flipped as in ``bench_worker --random-weights``, so answers run their full length)
answers ``--rows`` requests at once; ``FastDecoder.launch`` (the maths here, a graph replay on a GPU) and the
prefills are timed apart, and what the loop spends besides them, per step, is host work. Prints one JSON line
per setting and, with ``--profile``, cProfile's costliest functions of the decode thread.

``--simulate MS``: what the GIL does to a GPU's step. A stand-in device runs each launched step in MS
milliseconds (the host waits for it asleep, without the GIL, as ``Event.synchronize``); the loop does the
engine's real per-row work (token, stop rules) for ``--rows`` answers of real text, with and without lookahead,
alone and while another thread does the per-request work of the worker's request threads (prompt, grounding
tables, finishing and the claim check) non-stop, at Python's 5 ms GIL switch interval and the engine's 0.5 ms.
``--base-model``: the engine whose tokenizer and rules it uses (default: the tiny model).

``--stand-in MS``: the whole worker (the service, its request threads and post-check, the FastEngine loop with
lookahead, admission every 16 steps as on a GPU) on a stand-in device whose decode steps take MS ms without the
GIL and whose tokens are real answer text, each answer ending after 40-120 tokens; prefills are instant (their
grounding tables are still written). At concurrency 1 and ``--rows``, ``bench_worker.py``'s per-step breakdown:
what the host adds to a device step when nothing but Python and the GIL stand in between. ``--gil-releases N``
makes its launch give up the GIL N times, as a real one does: 3 until the token copy and the event's record were
captured into the step's graph (graph replay, token copy, event record), 1 since (the replay). At 64 rows each
time costs a wait for a request thread, which is how a GPU's ``launch`` column reached ~1.2 ms while the device
ran the step it queued (docs/BENCHMARKS.md, 2026-12-05 evening).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from mafioso import prompts  # noqa: E402
from mafioso.core.config import GenerationConfig, WorkerConfig  # noqa: E402
from tests.helpers import SNIPPETS  # noqa: E402
from tests.tiny_models import tiny_gemma_dir  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=64, help="concurrent requests (and slots)")
    parser.add_argument("--tokens", type=int, default=120, help="max_new_tokens")
    parser.add_argument("--repeat", type=int, default=3, help="timed batches per setting (the best is kept)")
    parser.add_argument("--no-repeat-ngram", type=int, default=0, help="GenerationConfig.no_repeat_ngram")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="print cProfile's N costliest functions (own time) of one batch per setting")
    parser.add_argument("--simulate", type=float, default=0.0, metavar="MS",
                        help="instead: a stand-in device of MS ms a step against a busy request thread")
    parser.add_argument("--stand-in", type=float, default=0.0, metavar="MS",
                        help="instead: the whole worker on a stand-in device of MS ms a step")
    parser.add_argument("--gil-releases", type=int, default=0, metavar="N",
                        help="--stand-in: times its launch gives up the GIL, as a CUDA launch does (default 0)")
    parser.add_argument("--base-model", default="",
                        help="--simulate, --stand-in: the model folder (default: the tiny one)")
    parser.add_argument("--request-threads", type=int, default=1, help="--simulate: busy request threads")
    parser.add_argument("--request-rate", type=float, default=0.0, metavar="R",
                        help="--simulate: requests a second, all threads together (default 0: non-stop)")
    parser.add_argument("--intervals", type=float, nargs="+", default=None, metavar="MS",
                        help="--simulate, --stand-in: GIL switch intervals to try (default: --simulate Python's "
                             "5 ms and the engine's, --stand-in the engine's)")
    return parser.parse_args(argv)


def _engine(folder: str, gen: GenerationConfig, rows: int):
    from mafioso.worker.decoder_settings import DecoderSettings
    from mafioso.worker.engines import load_engine
    from mafioso.worker.fast_engine import FastEngine

    plain = load_engine(WorkerConfig(base_model=folder, adapter="none", device="cpu", dtype="float32",
                                     fast_decode=False), gen)
    # lookahead as on a GPU; on a CPU launch() runs the step at once, so it changes the order, not the work
    return FastEngine(plain.model, plain.tokenizer, gen, "cpu",
                      DecoderSettings(slots=rows, max_len=1024, lookahead=True, admit_every=10 ** 6))


class _Timed:
    """Seconds spent in one callable, summed."""

    def __init__(self, fn):
        self.fn, self.s = fn, 0.0

    def __call__(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.s += time.perf_counter() - started


def measure(engine, requests: list[tuple[str, str | None]], profiler: cProfile.Profile | None = None) -> dict:
    """Decode one batch of ``requests`` at once; the decode thread's time per step split into the device's part
    (launch: the maths on a CPU), reading the tokens, and host work (the rest, prefill and idle apart)."""
    from mafioso.worker.fast_decode import FastDecoder

    decoder = engine.decoder
    launch = decoder.launch = _Timed(decoder.launch)
    collect = decoder.collect = _Timed(FastDecoder.collect)
    ids = engine.plain.prompt_ids(requests)
    groundings = engine.plain.groundings(requests)
    if profiler is not None:  # the host parts of a step, profiled in the decode thread itself
        for name in ("_collect", "_drop_cancelled"):
            setattr(engine, name, _profiled(getattr(engine, name), profiler))
    before = dict(vars(engine.stats))
    started = time.perf_counter()
    rows = engine.decode(ids, None, groundings)
    wall = time.perf_counter() - started
    if profiler is not None:
        del engine._collect, engine._drop_cancelled
    del decoder.launch, decoder.collect
    after = vars(engine.stats)
    steps = after["steps"] - before["steps"]
    prefill = after["prefill_s"] - before["prefill_s"]
    loop = wall - prefill
    tokens = sum(len(generated) for generated, _ in rows)
    host = loop - launch.s - collect.s
    return {"steps": steps, "rows_per_step": round((after["step_rows"] - before["step_rows"]) / steps, 1),
            "tokens": tokens, "launch_ms_per_step": round(1e3 * launch.s / steps, 3),
            "collect_ms_per_step": round(1e3 * collect.s / steps, 3),
            "host_ms_per_step": round(1e3 * host / steps, 3),
            "host_us_per_row_step": round(1e6 * host / (after["step_rows"] - before["step_rows"]), 2),
            "prefill_s": round(prefill, 3), "tokens_per_s": round(tokens / wall, 1)}


def _profiled(fn, profiler: cProfile.Profile):
    def run(*args, **kwargs):
        profiler.enable()
        try:
            return fn(*args, **kwargs)
        finally:
            profiler.disable()
    return run


_ANSWER = ("Listen up, pal: `add` takes `a` and `b` and returns their sum, so the print shows 5. Capisce? The loop "
           "walks `i` through 0, 1 and 2 and prints each square: 0, 1, 4. Simple business, kid. A list comprehension "
           "that shouts every name in `names`: AL and VITO. Respect the family. ")


def simulated_step_ms(plain, device_ms: float, rows: int, lookahead: bool, steps: int = 300) -> float:
    """Mean ms per step of a decode loop on a stand-in device of ``device_ms`` a step: each launch queues a step
    behind the last, each read waits for its step without the GIL, and every row's token goes through a
    :class:`mafioso.worker.control.Control` and the answer rules, as FastEngine._record does."""
    from mafioso.worker.control import Control

    text = plain.tokenizer.encode(_ANSWER * 3, add_special_tokens=False)
    rules = [plain.rules.for_answer() for _ in range(rows)]
    controls = [Control() for _ in range(rows)]
    done_at = time.perf_counter()

    def launch() -> float:
        nonlocal done_at
        done_at = max(done_at, time.perf_counter()) + device_ms / 1e3
        return done_at

    def collect(step: int, at: float) -> None:
        if (left := at - time.perf_counter()) > 0:
            time.sleep(left)
        for row in range(rows):
            token = text[(step + 7 * row) % len(text)]
            controls[row].emit(token)
            rules[row].add(token)

    started, pending = time.perf_counter(), None
    for step in range(steps):
        launched = launch()
        if pending is not None:
            collect(step - 1, pending)
        pending = launched
        if not lookahead:
            collect(step, pending)
            pending = None
    return 1e3 * (time.perf_counter() - started) / steps


def simulate(plain, device_ms: float, rows: int, threads: int = 1, intervals_ms: list[float] | None = None,
             rate: float = 0.0) -> list[dict]:
    """:func:`simulated_step_ms` with and without lookahead, alone and against ``threads`` request threads doing
    the worker's per-request work (non-stop, or ``rate`` requests a second in all), at each GIL switch interval
    (default: Python's and the engine's)."""
    from mafioso.worker.control import Control
    from mafioso.worker.decoder_settings import GPU_SWITCH_INTERVAL_S

    requests = [(code, request) for request, code, _ in SNIPPETS]
    answer = plain.tokenizer.encode(_ANSWER, add_special_tokens=False)
    stop = threading.Event()

    def request_work() -> None:
        period = threads / rate if rate else 0.0
        while not stop.is_set():
            for pair in requests:  # what a request thread does around its wait for the decode thread
                started = time.perf_counter()
                plain.prompt_ids([pair])
                plain.groundings([pair])
                plain.answers([pair], [(answer, None)], [Control()])
                if period:
                    stop.wait(max(0.0, period - (time.perf_counter() - started)))

    results, default = [], sys.getswitchinterval()
    try:
        for interval in [ms / 1e3 for ms in intervals_ms] if intervals_ms else (0.005, GPU_SWITCH_INTERVAL_S):
            sys.setswitchinterval(interval)
            for lookahead in (False, True):
                alone = simulated_step_ms(plain, device_ms, rows, lookahead)
                stop.clear()
                workers = [threading.Thread(target=request_work) for _ in range(threads)]
                for worker in workers:
                    worker.start()
                try:
                    busy = simulated_step_ms(plain, device_ms, rows, lookahead)
                finally:
                    stop.set()
                    for worker in workers:
                        worker.join()
                results.append({"device_ms": device_ms, "switch_interval_ms": interval * 1e3, "lookahead": lookahead,
                                "request_threads": threads, "request_rate": rate,
                                "step_ms_alone": round(alone, 3), "step_ms_request_thread_busy": round(busy, 3)})
                print(json.dumps(results[-1]), flush=True)
    finally:
        sys.setswitchinterval(default)
    return results


def stand_in_device(engine, device_ms: float, seed: int = 1, gil_releases: int = 0) -> None:
    """Replace ``engine``'s decoder maths with a stand-in device (see ``--stand-in``); its launch gives up the
    GIL ``gil_releases`` times, as a real one does (each call into CUDA runs without it and must take it back:
    the graph's replay, which also copies the tokens to the host and records their event)."""
    import random

    decoder, rng = engine.decoder, random.Random(seed)
    text = engine.tokenizer.encode(_ANSWER * 4, add_special_tokens=False)
    eos, position, length, done_at = engine.eos_ids[0], {}, {}, [time.perf_counter()]

    def prefill_many(slots, prompts, grounding=None, resumed=None):
        for slot, tables in zip(slots, grounding or [None] * len(slots)):
            position[slot], length[slot] = 0, rng.randint(40, 120)
            decoder.set_grounding(slot, tables)
        return [text[(7 * slot) % len(text)] for slot in slots]

    def launch(active, reach=None):
        done_at[0] = max(done_at[0], time.perf_counter()) + device_ms / 1e3  # queued: the device starts it
        for _ in range(gil_releases):
            time.sleep(0)  # releases the GIL and waits to take it back, as a CUDA call from Python does
        tokens = []
        for slot in range(decoder.bucket(active)):
            position[slot] = step = position.get(slot, 0) + 1
            tokens.append(eos if step >= length.get(slot, 1 << 30) else text[(step + 7 * slot) % len(text)])
        return tokens, done_at[0]

    def collect(handle):
        tokens, at = handle
        if (left := at - time.perf_counter()) > 0:
            time.sleep(left)  # the device's time, without the GIL
        return tokens

    decoder.prefill_many, decoder.launch, decoder.collect = prefill_many, launch, collect


def stand_in(folder: str, device_ms: float, rows: int, switch_interval_s: float | None = None,
             gil_releases: int = 0) -> list[dict]:
    """The whole worker on a stand-in device at concurrency 1 and ``rows``: one JSON line per level.
    ``switch_interval_s``: Python's GIL switch interval while it runs (default: the engine's on a GPU)."""
    import asyncio

    from bench_worker import run_worker
    from mafioso.worker.decoder_settings import GPU_ADMIT_EVERY, GPU_SWITCH_INTERVAL_S
    from mafioso.worker.engines import load_engine
    from mafioso.worker.service import Worker

    cfg = WorkerConfig(base_model=folder, adapter="none", device="cpu", dtype="float32", compile_decode=False,
                       max_batch_size=rows)
    engine = load_engine(cfg, GenerationConfig(max_new_tokens=120),
                         tuning={"slots": rows, "lookahead": True, "admit_every": GPU_ADMIT_EVERY,
                                 "switch_interval_s": switch_interval_s or GPU_SWITCH_INTERVAL_S})
    stand_in_device(engine, device_ms, gil_releases=gil_releases)

    async def levels() -> list[dict]:
        worker = Worker(engine, cfg)
        await worker.start()
        try:
            await run_worker(worker, rows, rows)  # warm-up
            results = []
            for concurrency in (1, rows):
                row = await run_worker(worker, 8 * concurrency, concurrency)
                results.append({"device_ms": device_ms, "switch_interval_ms": sys.getswitchinterval() * 1e3,
                                "gil_releases": gil_releases,
                                "concurrency": concurrency,
                                "tokens_per_s": row["tokens_per_s"], **row["decode"]})
                print(json.dumps(results[-1]), flush=True)
            return results
        finally:
            await worker.stop()

    default = sys.getswitchinterval()
    try:
        return asyncio.run(levels())
    finally:
        engine.close()
        sys.setswitchinterval(default)


def main(argv: list[str] | None = None) -> dict:
    """Measure every setting; print one JSON line each and return them."""
    args = parse_args(argv)
    folder = str(tiny_gemma_dir(tempfile.mkdtemp(prefix="mafioso-bench-host-"), flip_norm=True))
    if args.stand_in:
        intervals = [ms / 1e3 for ms in args.intervals] if args.intervals else [None]
        return {"stand_in": [row for interval in intervals
                             for row in stand_in(args.base_model or folder, args.stand_in, args.rows, interval,
                                                 args.gil_releases)]}
    if args.simulate:
        from mafioso.worker.engines import load_engine

        cfg = WorkerConfig(base_model=args.base_model or folder, adapter="none", device="cpu", dtype="float32",
                           fast_decode=False)
        plain = load_engine(cfg, GenerationConfig(max_new_tokens=args.tokens))
        return {"simulated": simulate(plain, args.simulate, args.rows, args.request_threads, args.intervals,
                                      args.request_rate)}
    requests = [(code, request) for request, code, _ in SNIPPETS] * (-(-args.rows // len(SNIPPETS)))
    requests = requests[:args.rows]
    results = {}
    for grounded in (True, False):
        gen = GenerationConfig(max_new_tokens=args.tokens, grounded_decoding=grounded,
                               no_repeat_ngram=args.no_repeat_ngram)
        engine = _engine(folder, gen, args.rows)
        try:
            measure(engine, requests)  # warm-up
            runs = [measure(engine, requests) for _ in range(args.repeat)]
            best = min(runs, key=lambda run: run["host_ms_per_step"])
            name = f"grounded {'on' if grounded else 'off'}"
            results[name] = {"lookahead": engine.lookahead, **best}
            print(json.dumps({"setting": name, **results[name]}), flush=True)
            if args.profile:
                profiler = cProfile.Profile()
                measure(engine, requests, profiler)
                pstats.Stats(profiler).sort_stats("tottime").print_stats(args.profile)
        finally:
            engine.close()
    return results


if __name__ == "__main__":
    main()
