"""Where the fast decode path spends its time: one decode step per batch size, and prefill per group size.

    python bench/bench_decode.py --base-model /tmp/gemma.gguf            # GPU (CUDA graphs, torch.compile)
    python bench/bench_decode.py --steps 5 --slots 8                      # CPU smoke run

Loads the model as the worker does (bf16, shipped adapter merged) and builds the fast path's decoder on it
with ``--slots`` slots (as the worker's engine does: CUDA graphs and torch.compile on a GPU, eager on a CPU),
then times ``FastDecoder.step`` at every batch-size bucket (slots at a typical position; each step's tokens read
before the next, and again launched ahead as the engine runs them) and ``prefill_many`` of 1, 4, 16 and 64
prompts of the benchmark snippets (after the shared instruction, as the worker). Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from mafioso import prompts  # noqa: E402
from bench.bench_worker import SNIPPETS  # noqa: E402
from mafioso.core.config import COMPILE_SCOPES, GenerationConfig, WorkerConfig  # noqa: E402


def timed(fn, repeat: int, sync) -> float:
    """Mean seconds per call of ``fn`` over ``repeat`` calls, after one warm-up call."""
    fn()
    sync()
    started = time.perf_counter()
    for _ in range(repeat):
        fn()
    sync()
    return (time.perf_counter() - started) / repeat


def profile(fn, cuda: bool, calls: int = 20) -> dict:
    """Per call of ``fn``: wall time, device kernels (CUDA) or operators (CPU), the ten kernels that take the
    most device time, and the host operators that take the most CPU time."""
    import torch
    from torch.profiler import ProfilerActivity

    fn()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with torch.profiler.profile(activities=activities) as prof:
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        if cuda:
            torch.cuda.synchronize()
        wall = time.perf_counter() - started
    kernels: dict[str, list[float]] = {}
    for event in prof.events():
        on_device = event.device_type == torch.autograd.DeviceType.CUDA if cuda else event.cpu_parent is None
        if on_device:
            kernels.setdefault(event.name, []).append(event.device_time if cuda else event.cpu_time)
    ranked = sorted(kernels.items(), key=lambda kv: -sum(kv[1]))
    host = sorted(prof.key_averages(), key=lambda avg: -avg.self_cpu_time_total)[:10]
    return {"wall_us_per_call": round(wall / calls * 1e6, 1),
            "kernels_per_call": round(sum(map(len, kernels.values())) / calls, 1),
            "device_us_per_call": round(sum(map(sum, kernels.values())) / calls, 1),
            "top": [{"name": name, "calls_per_call": round(len(t) / calls, 1), "us_per_call": round(sum(t) / calls, 1)}
                    for name, t in ranked],  # every kernel, the slowest first
            "host_top": [{"name": avg.key, "calls_per_call": round(avg.count / calls, 1),
                          "self_cpu_us_per_call": round(avg.self_cpu_time_total / calls, 1)} for avg in host]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model", default="")
    parser.add_argument("--adapter", default="default")
    parser.add_argument("--compile-decode", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--slots", type=int, default=WorkerConfig.max_batch_size, help="KV-cache slots")
    parser.add_argument("--long-slots", type=int, default=None,
                        help="slots for long prompts, the others short (default: the worker's, 8 on CUDA;"
                             " all slots long on a CPU)")
    parser.add_argument("--steps", type=int, default=200, help="decode steps timed per batch size")
    parser.add_argument("--position", type=int, default=300, help="cache position of every slot while timing")
    parser.add_argument("--reach", type=int, default=None,
                        help="each step's key span covers positions [0, REACH) (default: position + 1, as the "
                             "engine asks for rows at that position; 0: the whole slot, as before the spans)")
    parser.add_argument("--cache-multiple", type=int, default=None,
                        help="cache parts hold a multiple of this many positions (default: FastDecoder's)")
    parser.add_argument("--compile-scope", choices=COMPILE_SCOPES, default=WorkerConfig.compile_scope,
                        help="what torch.compile compiles: the whole step or each layer")
    parser.add_argument("--share-prefix", action=argparse.BooleanOptionalAction, default=None,
                        help="prefill after the shared instruction, as the worker (default: on)")
    parser.add_argument("--profile", type=int, nargs="*", default=[], metavar="BATCH",
                        help="also profile one decode step at these batch sizes and a one-prompt prefill: "
                             "kernels per step and the slowest kernels")
    args = parser.parse_args(argv)

    import torch

    from mafioso.worker.engines import load_engine
    from mafioso.worker.fast_decode import FastDecoder
    from mafioso.worker.decoder_settings import GPU_LONG_SLOTS, DecoderSettings, slot_length
    from mafioso.worker.fast_engine import build_decoder, gpu_memory_gb

    cfg = WorkerConfig(base_model=args.base_model, adapter=args.adapter, device=args.device, fast_decode=False)
    gen = GenerationConfig()
    started = time.perf_counter()
    engine = load_engine(cfg, gen)  # the reference engine: only its merged model and tokenizer are used
    cuda = next(engine.model.parameters()).device.type == "cuda"
    compiled = args.compile_decode and cuda  # as the worker: torch.compile on CUDA only
    long_slots = args.long_slots if args.long_slots is not None else (GPU_LONG_SLOTS if cuda else None)
    if args.cache_multiple is not None:
        FastDecoder.cache_multiple = args.cache_multiple
    settings = DecoderSettings(slots=args.slots, max_len=slot_length(cfg, gen), compile=compiled,
                               compile_scope=args.compile_scope, long_slots=long_slots,
                               share_prefix=True if args.share_prefix is None else args.share_prefix)
    decoder = build_decoder(engine.model, engine.tokenizer, gen, settings)
    decoder.warm_up()
    load_s = time.perf_counter() - started
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    ids = [prompts.encode(engine.tokenizer, code)["input_ids"] for code in SNIPPETS]
    reach = {None: args.position + 1, 0: None}.get(args.reach, args.reach)

    def step(b: int) -> None:
        decoder.positions[:b] = args.position  # every slot stays at one position: timing, not text
        decoder.step(b, reach)
        decoder.next_tokens[:b].tolist()  # the engine reads every step's tokens back

    def pipelined(b: int) -> None:
        """``args.steps`` steps as the engine runs them: each launched before the last one's tokens are read."""
        pending = None
        for _ in range(args.steps):
            decoder.positions[:b] = args.position
            launched = decoder.launch(b, reach)
            if pending is not None:
                decoder.collect(pending)
            pending = launched
        decoder.collect(pending)

    steps = []
    for b in decoder.buckets:
        seconds = timed(lambda b=b: step(b), args.steps, sync)
        ahead = timed(lambda b=b: pipelined(b), 1, sync) / args.steps
        steps.append({"batch": b, "ms_per_step": round(seconds * 1e3, 3), "tokens_per_s": round(b / seconds, 1),
                      "lookahead_ms_per_step": round(ahead * 1e3, 3)})
        print(json.dumps(steps[-1]), file=sys.stderr, flush=True)
    prefills = []
    for n in (1, 4, 16, 64):
        if n > decoder.slots:
            break
        group = [ids[i % len(ids)] for i in range(n)]
        seconds = timed(lambda n=n, group=group: decoder.prefill_many(list(range(n)), group), 5, sync)
        prefills.append({"prompts": n, "prompt_tokens": sum(map(len, group)), "ms": round(seconds * 1e3, 2)})
        print(json.dumps(prefills[-1]), file=sys.stderr, flush=True)
    profiles = {f"step{b}": profile(lambda b=b: step(b), cuda) for b in args.profile}
    if args.profile:
        profiles["prefill1"] = profile(lambda: decoder.prefill_many([0], ids[:1]), cuda)
    memory = {"kv_cache": round(decoder.cache_bytes / 1e9, 3), **(gpu_memory_gb() if cuda else {})}  # GB
    result = {"device": torch.cuda.get_device_name() if cuda else "cpu", "compile": compiled,
              "cuda_graphs": decoder.cuda_graphs, "load_and_warm_up_s": round(load_s, 1),
              "slot_length": decoder.max_len, "short_slots": decoder.short_slots, "short_len": decoder.short_len,
              "shared_prefix_tokens": len(decoder.prefix), "warm_up_s": decoder.warm_up_s,
              "position": args.position, "key_span": decoder.key_span(reach), "steps": steps, "prefill": prefills,
              "memory": memory, "profiles": profiles}
    print(f"device {result['device']}, compile {compiled}, CUDA graphs {decoder.cuda_graphs}, key span "
          f"{result['key_span']} of {decoder.max_len}, "
          f"load + warm-up {result['load_and_warm_up_s']} s")
    for row in steps:
        print(f"decode step  batch {row['batch']:>3}: {row['ms_per_step']:>8} ms  {row['tokens_per_s']:>9} tok/s"
              f"  (launched ahead: {row['lookahead_ms_per_step']} ms)")
    for row in prefills:
        print(f"prefill {row['prompts']:>3} prompts ({row['prompt_tokens']:>5} tokens): {row['ms']:>8} ms")
    print(f"memory {memory}")
    for name, prof in profiles.items():
        print(f"{name}: {prof['wall_us_per_call']} us a call (profiled), {prof['kernels_per_call']} kernels, "
              f"{prof['device_us_per_call']} us on the device; "
              f"slowest: " + "; ".join(f"{k['name'][:60]} x{k['calls_per_call']} {k['us_per_call']} us"
                                       for k in prof["top"][:5]))
        print("  host: " + "; ".join(f"{k['name'][:40]} x{k['calls_per_call']} {k['self_cpu_us_per_call']} us"
                                     for k in prof["host_top"][:6]))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
