"""Throughput and latency of the batching worker against naive one-at-a-time ``generate``.

    python bench/bench_worker.py --also nf4 int8            # GPU: the full table, shipped adapter
    python bench/bench_worker.py --concurrency 1 4 --requests 4 --naive-requests 4   # CPU
    python bench/bench_worker.py --quick --adapter none     # smoke run
    python bench/bench_worker.py --concurrency 1 4 --sampled 0.7   # greedy and sampled requests, one run
    python bench/bench_worker.py --base-model DIR --random-weights --adapter none   # DIR: config + tokenizer only

Both sides load the same base and adapter and decode greedily with the same GenerationConfig:

* worker: the real :class:`mafioso.worker.service.Worker` in-process in its default configuration (bf16, adapter
  merged, the fast decode path: on CUDA in CUDA graphs), ``explain`` driven by C concurrent callers over a
  fixed set of snippets, for each C in ``--concurrency``; latency includes queueing. ``--also nf4 int8``
  adds the quantized worker modes at concurrency 1 and 16;
* naive: transformers ``generate`` on one request at a time, stopping at EOS only, with the adapter as an
  unmerged PeftModel on the base (4-bit NF4 on CUDA, fp32 on CPU).

Time to first token (issue 20): ``ttft`` rows, at each ``--ttft`` concurrency (default 1 16 64), whose p50/p95
columns are the seconds from a request to the engine's first answer token (queueing and prefill included; the
``mafioso_time_to_first_token_seconds`` histogram of /metrics measures the same).

An architecture's speed without its weights (``--random-weights``): ``--base-model`` names a Hugging Face folder
of which only ``config.json`` and the tokenizer files are read; the model is built from that config with random
weights (seeded) and saved once to a temporary folder, which the worker then loads as any base. Random weights
answer noise: the final norm's weight gets random signs so that greedy decoding does not repeat the token it
read (a tied head makes a token its own best successor) and answers run to ``--max-new-tokens`` like real ones;
the table's tokens per request shows whether they did.

Prints a table, then one JSON line with every number (the last line of the output). For the fast engine each
row also says where its decode thread spent the level (``DecodeStats``): ms per decode step, the part of it spent
waiting for the device, the host's launching, recording tokens and admitting rows (ms per step; the rest of the
step is the loop's own work and waiting for the GIL), and prefill ms per request.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from mafioso import prompts  # noqa: E402
from mafioso.core.config import COMPILE_SCOPES, GenerationConfig, WorkerConfig  # noqa: E402

SNIPPETS = [
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
    "for i in range(3):\n    print(i * i)",
    "names = [n.upper() for n in ['al', 'vito', 'sonny']]",
    "class Crew:\n    def __init__(self):\n        self.members = []\n\n    def join(self, name):\n"
    "        self.members.append(name)\n        return len(self.members)",
    "import json\nprint(json.dumps({'don': 1, 'capo': 2}, indent=2))",
    "total = sum(x for x in range(10) if x % 2)",
    "with open('ledger.txt') as f:\n    lines = [line.strip() for line in f if line.strip()]",
    "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a",
    "from collections import Counter\nwords = 'the family the business the books'.split()\n"
    "print(Counter(words).most_common(1))",
    "try:\n    value = int(input('amount: '))\nexcept ValueError:\n    value = 0\nprint(value * 2)",
    "def cached(fn):\n    memo = {}\n    def wrapper(x):\n        if x not in memo:\n"
    "            memo[x] = fn(x)\n        return memo[x]\n    return wrapper",
    "x = [3, 1, 2]\nx.sort(reverse=True)\nprint(x[0])",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model", default="", help="as for mafioso worker (default: the adapter's base)")
    parser.add_argument("--random-weights", action="store_true",
                        help="build the model from --base-model's config (a Hugging Face folder: config.json and "
                             "tokenizer files; weights not needed) with random weights: the architecture's speed")
    parser.add_argument("--adapter", default="default", help="adapter folder, 'default' or 'none'")
    parser.add_argument("--quantization", default=WorkerConfig.quantization,
                        help="the worker's quantization on CUDA (default: the worker's default)")
    parser.add_argument("--fast-decode", action=argparse.BooleanOptionalAction, default=True,
                        help="the worker's own decode loop (its default); off = transformers generate")
    parser.add_argument("--compile-decode", action=argparse.BooleanOptionalAction, default=True,
                        help="torch.compile the fast decode step (the worker's default)")
    parser.add_argument("--compile-scope", choices=COMPILE_SCOPES, default=WorkerConfig.compile_scope,
                        help="what torch.compile compiles: the whole step or each layer")
    parser.add_argument("--also", nargs="*", default=[], metavar="MODE",
                        help="more worker quantizations to measure at concurrency 1 and 16 (e.g. nf4 int8)")
    parser.add_argument("--admit-every", type=int, nargs="+", metavar="STEPS",
                        help="fast engine admission interval(s): the first for the table, each other one adds a "
                             "row at the highest concurrency (default: the engine's)")
    parser.add_argument("--long-slots", type=int, default=None,
                        help="fast engine on CUDA: slots for long prompts, the others hold short ones only "
                             "(default: DecoderSettings.of: 8 on a GPU; 0: every slot long)")
    parser.add_argument("--share-prefix", action=argparse.BooleanOptionalAction, default=None,
                        help="fast engine: prefill the shared instruction once (default: DecoderSettings.share_prefix)")
    parser.add_argument("--switch-interval", type=float, default=None, metavar="S",
                        help="fast engine: Python's GIL switch interval while serving (default: "
                             "DecoderSettings: 0.0005 on a GPU; 0.005 is Python's own)")
    parser.add_argument("--more-switch-intervals", type=float, nargs="+", default=[], metavar="S",
                        help="fast engine: the highest concurrency again at each of these GIL switch intervals "
                             "(seconds; the engine's is set again after)")
    parser.add_argument("--no-lookahead-rows", action="store_true",
                        help="also measure the fast engine without lookahead (each step's tokens read before the "
                             "next is launched) at the lowest and highest concurrency")
    parser.add_argument("--requests", type=int, help="worker requests per concurrency level "
                                                     "(default: --waves x concurrency, at least 8)")
    parser.add_argument("--waves", type=int, default=4,
                        help="requests per caller at each concurrency level (default 4): more waves, less of the "
                             "ramp at the start and the drain at the end in the aggregate")
    parser.add_argument("--naive-requests", type=int, default=8, help="requests for the naive baseline (0: none)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--ttft", type=int, nargs="*", default=list(TTFT_LEVELS),
                        help="concurrency levels for the time-to-first-token rows (none: skip them)")
    parser.add_argument("--max-new-tokens", type=int, default=120)
    parser.add_argument("--sampled", type=float, default=None, metavar="TEMPERATURE",
                        help="also every level with requests sampled at this temperature (top_p 0.9), as the API's "
                             "temperature asks: the plain generate path")
    parser.add_argument("--grounded-decoding", action=argparse.BooleanOptionalAction, default=True,
                        help="the worker's grounded decoding (default on, as served; off to measure its cost)")
    parser.add_argument("--retries", type=int, default=GenerationConfig.retry_unsupported, metavar="ROUNDS",
                        help="GenerationConfig.retry_unsupported: rounds of decoding an answer again from before a "
                             "sentence the post-check drops (default: the worker's; 0 measures the decoding alone)")
    parser.add_argument("--cut-unsupported", choices=("auto", "on", "off"), default=GenerationConfig.cut_unsupported,
                        help="GenerationConfig.cut_unsupported: with retries, stop an answer at its first sentence "
                             "the post-check drops (default: the worker's, auto: on where answers decode on the CPU)")
    parser.add_argument("--also-cut", action="store_true",
                        help="every level again in the same process with the claim cut the other way")
    parser.add_argument("--quick", action="store_true",
                        help="CPU smoke run: concurrency 1 4, 4 requests a level, 4 naive, 16 new tokens")
    args = parser.parse_args(argv)
    if args.random_weights and not (Path(args.base_model) / "config.json").is_file():
        parser.error("--random-weights needs --base-model FOLDER holding a config.json and the tokenizer files")
    if args.quick:
        args.concurrency, args.requests, args.naive_requests, args.max_new_tokens = [1, 4], 4, 4, 16
        args.ttft = [1]
        args.also = []
    return args


WEIGHT_FILES = (".safetensors", ".safetensors.index.json", ".bin", ".bin.index.json", ".pt", ".gguf")


def random_base(folder: str, seed: int = 0, target: Path | None = None) -> str:
    """A model folder (``target``, else a new temporary one): ``folder``'s config with random weights
    (transformers' initialisation, seeded; bf16), and ``folder``'s other files but its weights (tokenizer,
    generation config). The final norm's weight gets random signs: with transformers' small initial weights the
    hidden state stays close to the token's embedding, which a tied head would score highest, so greedy answers
    would repeat one token and stop at once as a loop; with the signs flipped the next token is a pseudo-random
    function of the context."""
    import shutil
    import tempfile

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    source = Path(folder)
    config = AutoConfig.from_pretrained(source)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    with torch.no_grad():  # Gemma's norms scale by 1 + weight, Qwen2's by the weight
        norm = model.get_decoder().norm.weight
        signs = torch.where(torch.rand(norm.shape) < 0.5, -1.0, 1.0)
        norm.copy_(signs - 1.0 if config.get_text_config().model_type.startswith("gemma") else signs)
    target = target or Path(tempfile.mkdtemp(prefix="mafioso-random-base-"))
    model.save_pretrained(target)
    for path in source.iterdir():  # the folder's own config, tokenizer and generation config over the saved ones
        if path.is_file() and not path.name.endswith(WEIGHT_FILES):
            shutil.copy2(path, target / path.name)
    print(json.dumps({"random_weights": str(target), "config": str(source / "config.json"),
                      "parameters": sum(p.numel() for p in model.parameters())}), file=sys.stderr, flush=True)
    return str(target)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), linear between samples."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[int(q) - 1]


def summary(name: str, concurrency: int, latencies: list[float], tokens: int, wall: float) -> dict:
    """One row of the table."""
    return {"name": name, "concurrency": concurrency, "requests": len(latencies), "tokens": tokens,
            "wall_s": round(wall, 3), "tokens_per_s": round(tokens / wall, 1),
            "p50_s": round(percentile(latencies, 50), 3), "p95_s": round(percentile(latencies, 95), 3)}


def decode_breakdown(before, after, wall: float) -> dict:
    """Where the fast engine's decode thread spent a level (two readings of
    :class:`mafioso.worker.fast_engine.DecodeStats`): per decode step, the loop's time, the part of it spent waiting for the device (the rest is host work:
    launching, recording tokens and admitting rows are timed apart, what is left is the loop's own and the GIL),
    rows per step; the level's prefill seconds, and per request."""
    steps = max(1, after.steps - before.steps)
    prefill = after.prefill_s - before.prefill_s
    loop = wall - (after.idle_s - before.idle_s) - prefill
    prompts_in = max(1, after.prefill_prompts - before.prefill_prompts)
    return {"steps": after.steps - before.steps,
            "rows_per_step": round((after.step_rows - before.step_rows) / steps, 1),
            "step_ms": round(loop / steps * 1e3, 3), "wait_ms": round((after.wait_s - before.wait_s) / steps * 1e3, 3),
            **{f"{part}_ms": round((getattr(after, f"{part}_s") - getattr(before, f"{part}_s")) / steps * 1e3, 3)
               for part in ("launch", "record", "admit")},
            "prefills": after.prefills - before.prefills, "prefill_s": round(prefill, 3),
            "prefill_ms_per_request": round(prefill / prompts_in * 1e3, 3)}


async def run_worker(worker, requests: int, concurrency: int, name: str = "worker", sampling=None) -> dict:
    """Drive ``worker.explain`` with ``concurrency`` callers until ``requests`` answers came back (``sampling``:
    each request's, as the API's temperature sets it; None: the worker's greedy default)."""
    latencies: list[float] = []
    tokens = 0
    gate = asyncio.Semaphore(concurrency)
    stats = getattr(worker.engine, "stats", None)
    before = dataclasses.replace(stats) if stats is not None else None

    async def one(i: int) -> None:
        nonlocal tokens
        async with gate:
            answer = await worker.explain(SNIPPETS[i % len(SNIPPETS)], sampling=sampling)
        latencies.append(answer.latency_s)
        tokens += answer.tokens

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(requests)))
    row = summary(name, concurrency, latencies, tokens, time.perf_counter() - started)
    if before is not None and stats.steps > before.steps:  # sampled rows take the plain path: no decode steps
        row["decode"] = decode_breakdown(before, stats, row["wall_s"])
    return row


def load_naive(cfg: WorkerConfig):
    """The baseline model: base (NF4 on CUDA, fp32 on CPU) with the adapter as an unmerged PeftModel."""
    import torch
    from peft import PeftModel

    from mafioso.worker.engine import adapter_folder, base_of
    from mafioso.core.base_model import load_model, load_tokenizer, resolve_base

    adapter = adapter_folder(cfg.adapter, cfg.base_model)
    base = resolve_base(base_of(cfg.base_model, adapter))
    cuda = torch.cuda.is_available()
    model = load_model(base, "nf4" if cuda else "none", "cuda" if cuda else "cpu",
                       torch.bfloat16 if cuda else torch.float32, attn_implementation="sdpa")
    if adapter is not None:
        model = PeftModel.from_pretrained(model, str(adapter))
    return model.eval(), load_tokenizer(base)


def run_naive(model, tokenizer, gen: GenerationConfig, requests: int) -> dict:
    """Plain ``generate`` on one request at a time, EOS as the only stop."""
    import torch

    device = next(model.parameters()).device
    latencies, tokens = [], 0
    started = time.perf_counter()
    for i in range(requests):
        t0 = time.perf_counter()
        ids = prompts.encode(tokenizer, SNIPPETS[i % len(SNIPPETS)])["input_ids"]
        with torch.inference_mode():
            out = model.generate(input_ids=torch.tensor([ids], device=device), max_new_tokens=gen.max_new_tokens,
                                 do_sample=False, repetition_penalty=gen.repetition_penalty,
                                 pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        generated = out[0, len(ids):].tolist()
        tokens += generated.index(tokenizer.eos_token_id) + 1 if tokenizer.eos_token_id in generated else len(generated)
        latencies.append(time.perf_counter() - t0)
    return summary("naive", 1, latencies, tokens, time.perf_counter() - started)


TTFT_LEVELS = (1, 16, 64)


class _FirstToken:
    """A token sink (``Control.sink``) that only notes when the first answer token came."""

    def __init__(self):
        self.at: float | None = None

    def push(self, token: int) -> None:
        if self.at is None:
            self.at = time.perf_counter()


async def measure_ttft(worker, levels=TTFT_LEVELS, name: str = "ttft") -> list[dict]:
    """Time to first token at each concurrency level: C callers keep C requests in flight (2 x C requests, at
    least 8); a row's p50_s/p95_s are the seconds from a request to its first answer token."""
    rows = []
    for concurrency in levels:
        gate, ttfts, tokens = asyncio.Semaphore(concurrency), [], 0

        async def one(i: int) -> None:
            nonlocal tokens
            async with gate:
                sink, sent = _FirstToken(), time.perf_counter()
                answer = await worker.explain(SNIPPETS[i % len(SNIPPETS)], sink=sink)
                tokens += answer.tokens
                ttfts.append(sink.at - sent)

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(max(8, 2 * concurrency))))
        rows.append(summary(name, concurrency, ttfts, tokens, time.perf_counter() - started))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return rows


async def measure_worker(cfg: WorkerConfig, gen: GenerationConfig, requests: dict[int, int],
                         name: str, admit_every: list[int] | None = None,
                         no_lookahead_rows: bool = False, ttft=(),
                         tuning: dict | None = None, sampled: float | None = None,
                         switch_intervals: list[float] = (),
                         also_cut: bool = False) -> tuple[list[dict], float | None]:
    """Table rows for one worker configuration (``requests``: concurrency -> request count), and its start-up
    time and GPU memory in GB (None on CPU): the fast engine's start-up steps, the peak while serving, the
    overall peak of torch's allocations, what torch's allocator reserved and what the whole card had in use.
    ``admit_every``: fast-engine admission intervals, the first for every level, the others at the highest
    level only; ``switch_intervals``: the highest level again at each of these GIL switch intervals (the
    engine sets one for the whole process at its start); ``no_lookahead_rows``: the lowest and highest level again with the
    fast engine's lookahead off; ``sampled``: every level again with requests sampled at that temperature
    (top_p 0.9: the fast engine hands them to its plain ``generate`` path); ``also_cut``: every level again with
    the claim cut the other way (``cut_unsupported`` on where it was off, off where it was on)."""
    import torch

    from mafioso.worker.engines import load_engine
    from mafioso.worker.fast_engine import gpu_memory_gb
    from mafioso.worker.service import Worker

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    engine = load_engine(cfg, gen, tuning=tuning)  # load, merge, compile and capture: the worker's start-up
    start_up_s = round(time.perf_counter() - started, 1)
    print(json.dumps({"start_up_s": start_up_s}), file=sys.stderr, flush=True)
    intervals = admit_every if admit_every and hasattr(engine, "admit_every") else []
    if intervals:
        engine.admit_every = intervals[0]
    worker = Worker(engine, cfg)
    await worker.start()
    for snippet in SNIPPETS:  # warm-up: kernels and allocator blocks for every prompt shape, alone and batched
        await worker.explain(snippet)
    await asyncio.gather(*(worker.explain(snippet) for snippet in SNIPPETS))
    for concurrency in requests:  # and one wave at every level: first-time shapes are not timed below
        await run_worker(worker, concurrency, concurrency)
    if cuda:
        startup_peak = torch.cuda.max_memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    rows = []
    for concurrency, count in requests.items():
        rows.append(await run_worker(worker, count, concurrency, name))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)  # progress: one row at a time
    top = max(requests)
    for interval in intervals[1:]:
        engine.admit_every = interval
        rows.append(await run_worker(worker, requests[top], top, f"{name}-a{interval}"))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    for interval in switch_intervals:
        engine_s = sys.getswitchinterval()
        sys.setswitchinterval(interval)
        try:
            rows.append(await run_worker(worker, requests[top], top, f"{name}-gil{interval * 1e3:g}ms"))
        finally:
            sys.setswitchinterval(engine_s)
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    if no_lookahead_rows and getattr(engine, "lookahead", False):
        if intervals:
            engine.admit_every = intervals[0]
        engine.lookahead = False
        for level in sorted({min(requests), top}):
            rows.append(await run_worker(worker, requests[level], level, f"{name}-nolook"))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    if also_cut:
        from mafioso.worker.retry import cuts

        engine.gen = dataclasses.replace(engine.gen, cut_unsupported="off" if cuts(engine) else "on")
        for concurrency, count in requests.items():
            rows.append(await run_worker(worker, count, concurrency, f"{name}-cut{engine.gen.cut_unsupported}"))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        engine.gen = gen
    if sampled is not None:
        from mafioso.worker.sampling import Sampling

        drawn = Sampling(sampled, 0.9)
        await run_worker(worker, min(requests), min(requests), sampling=drawn)  # warm-up of the plain path
        for concurrency, count in requests.items():
            rows.append(await run_worker(worker, count, concurrency, f"{name}-T{sampled:g}", drawn))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    rows += await measure_ttft(worker, ttft)
    await worker.stop()
    decoder = getattr(engine, "decoder", None)
    info = {"start_up_s": start_up_s, "warm_up_s": getattr(decoder, "warm_up_s", None),
            "shared_prefix_tokens": len(getattr(decoder, "prefix", []))}
    print(json.dumps(info), file=sys.stderr, flush=True)
    engine.close()
    memory = None
    if cuda:
        now = gpu_memory_gb()  # its peak: since the reset after warm-up, i.e. while serving
        memory = {"start_up_s": start_up_s, "start_up": getattr(engine, "memory", {}), "serving_peak": now["peak"],
                  **now, "peak": max(round(startup_peak / 1e9, 3), now["peak"])}
        memory["warm_up_s"] = info["warm_up_s"]
    del worker, engine
    return rows, memory


async def bench(args: argparse.Namespace) -> dict:
    """Every measurement of one run: the worker's default, other quantizations, then the naive baseline."""
    import torch

    from mafioso.worker.decoder_settings import GPU_LONG_SLOTS, DecoderSettings

    tuning = {name: value for name, value in (("long_slots", args.long_slots), ("share_prefix", args.share_prefix),
                                              ("switch_interval_s", args.switch_interval)) if value is not None}
    gen = GenerationConfig(max_new_tokens=args.max_new_tokens, grounded_decoding=args.grounded_decoding,
                           retry_unsupported=args.retries, cut_unsupported=args.cut_unsupported)
    base = random_base(args.base_model) if args.random_weights else args.base_model
    cfg = WorkerConfig(base_model=base, adapter=args.adapter, quantization=args.quantization,
                       max_batch_size=max(args.concurrency), queue_size=max(1024, 4 * max(args.concurrency)),
                       request_timeout=3600.0, fast_decode=args.fast_decode, compile_decode=args.compile_decode,
                       compile_scope=args.compile_scope)
    levels = {c: args.requests or max(8, args.waves * c) for c in args.concurrency}
    rows, memory = await measure_worker(cfg, gen, levels, "worker", args.admit_every, args.no_lookahead_rows,
                                        args.ttft, tuning, args.sampled, args.more_switch_intervals, args.also_cut)
    memory = {args.quantization: memory}
    for mode in args.also:  # the slow generate-based modes: fewer requests
        extra, memory[mode] = await measure_worker(dataclasses.replace(cfg, quantization=mode), gen,
                                                   {1: 4, 16: 16}, f"w-{mode}")
        rows += extra

    if args.naive_requests:  # 0: no baseline (a short GPU call)
        model, tokenizer = load_naive(cfg)
        run_naive(model, tokenizer, gen, 2)  # warm-up
        rows.append(run_naive(model, tokenizer, gen, args.naive_requests))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return {"device": device, "base_model": args.base_model or "(adapter's / embedded)", "adapter": args.adapter,
            "random_weights": args.random_weights,
            "quantization": args.quantization if torch.cuda.is_available() else "none (CPU)",
            "gpu_memory_gb": memory,
            "long_slots": tuning.get("long_slots", GPU_LONG_SLOTS) if torch.cuda.is_available() else None,
            "share_prefix": tuning.get("share_prefix", DecoderSettings.share_prefix),
            "max_new_tokens": args.max_new_tokens, "retries": args.retries, "cut": args.cut_unsupported,
            "rows": rows}


def table(result: dict) -> str:
    """The rows as a plain-text table."""
    head = (f"{'path':<15}{'conc':>6}{'reqs':>6}{'tokens':>8}{'wall s':>9}{'tok/s':>9}{'p50 s':>8}{'p95 s':>8}"
            f"{'step ms':>9}{'wait ms':>9}{'launch':>8}{'record':>8}{'admit':>8}{'prefill ms':>11}")
    lines = [f"device {result['device']}, adapter {result['adapter']}, max_new_tokens {result['max_new_tokens']}, "
             f"retries {result['retries']}, cut {result.get('cut', 'auto')}, "
             f"GPU memory GB {result['gpu_memory_gb']}", head, "-" * len(head)]
    for r in result["rows"]:
        d = r.get("decode", {})  # the fast engine's decode thread: per step, and its wait for the device
        lines.append(f"{r['name']:<15}{r['concurrency']:>6}{r['requests']:>6}{r['tokens']:>8}{r['wall_s']:>9}"
                     f"{r['tokens_per_s']:>9}{r['p50_s']:>8}{r['p95_s']:>8}{d.get('step_ms', ''):>9}"
                     f"{d.get('wait_ms', ''):>9}{d.get('launch_ms', ''):>8}{d.get('record_ms', ''):>8}"
                     f"{d.get('admit_ms', ''):>8}{d.get('prefill_ms_per_request', ''):>11}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table and the JSON line."""
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    result = asyncio.run(bench(parse_args(argv)))
    print(table(result))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
