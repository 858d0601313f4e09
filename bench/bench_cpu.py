"""CPU answer speed in fp32, bf16 and int8 weights, in the same run on the same machine (issue 21).

    python bench/bench_cpu.py                       # 5 rounds, then the cold explain per dtype
    python bench/bench_cpu.py --rounds 3 --no-cold  # warm figures only
    python bench/bench_cpu.py --agreement 16        # also: greedy answers to 16 validation rows against fp32's
    python bench/bench_cpu.py --base-model qwen2.5-coder-0.5b --dtypes int8 --no-cold   # another base (issue 17)

Loads the real embedded Gemma 3 (or ``--base-model``) with its shipped adapter three times, as the worker does
with ``MAFIOSO_DTYPE`` float32, bfloat16 and int8 (or ``--dtypes``; merged weights from the serving cache; a first
run builds them),
then, round by round with the three in turn (the machine is shared: load hits all alike), for each:

* a warm 120-token answer to ``examples/fizzbuzz.py`` (the README's example): the prefill and 119 decode steps
  on the engine's own decoder, EOS ignored, so every dtype does the same work; tokens/s counts the prefill;
* the real answer (``GenerateEngine.generate``: stop rules and post-check, its own length): tokens and seconds.

Medians over the rounds. Then, unless ``--no-cold``, the cold ``mafioso explain examples/fizzbuzz.py
--max-new-tokens 1`` per dtype, a fresh process with the cache warm, ``--cold-runs`` times each interleaved: the
time to the first token (``explain`` prints its answer whole, so one token is the first token). With
``--agreement N``, each dtype also answers the first N rows of ``data/validation.json`` greedily (one at a time,
up to 120 tokens or EOS, on the decoder): how many answers are token-identical to fp32's, and where the others
first differ. Prints the machine
(CPU model, avx512_bf16), the load (``uptime``) before and after, what ``auto`` chooses here, a table, the three
answers, and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from mafioso import prompts  # noqa: E402
from mafioso.core.config import GenerationConfig, WorkerConfig  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "fizzbuzz.py"
DTYPES = ("float32", "bfloat16", "int8")
TOKENS = 120


def machine() -> dict:
    """The CPU's model name, whether it has native bf16 (avx512_bf16) and VNNI, and the cores torch uses."""
    import torch

    info = {}
    for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
        name, _, value = line.partition(":")
        info.setdefault(name.strip(), value.strip())
    flags = info.get("flags", "").split()
    return {"cpu": info.get("model name", "?"), "avx512_bf16": "avx512_bf16" in flags,
            "avx512_vnni": "avx512_vnni" in flags, "threads": torch.get_num_threads(), "torch": torch.__version__}


def uptime() -> str:
    """The load averages, as ``uptime`` prints them."""
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def fixed_answer(engine, ids: list[int]) -> float:
    """Seconds for a 120-token answer on the engine's decoder: the prefill (first token) and 119 decode steps,
    each over the key span the engine asks for (the prompt and the answer). The engine's own decode thread is
    idle meanwhile (it waits for requests)."""
    decoder = engine.decoder
    start = time.perf_counter()
    decoder.prefill_many([0], [ids])
    for _ in range(TOKENS - 1):
        decoder.step(1, len(ids) + TOKENS).tolist()
    return time.perf_counter() - start


def greedy_answer(engine, ids: list[int]) -> list[int]:
    """The decoder's greedy answer to one prompt: up to 120 tokens, stopping at EOS."""
    decoder, eos = engine.decoder, set(engine.eos_ids)
    tokens = [decoder.prefill_many([0], [ids])[0]]
    while tokens[-1] not in eos and len(tokens) < TOKENS:
        tokens.append(decoder.step(1, len(ids) + TOKENS).tolist()[0])
    return tokens


def agreement(engines: dict, rows: int) -> dict:
    """Per dtype: answers to the first ``rows`` validation rows token-identical to fp32's, and the first
    differing token of each other one."""
    data = json.loads((ROOT / "data" / "validation.json").read_text(encoding="utf-8"))
    samples = list(data.values())[:rows]
    tokenizer = engines["float32"].tokenizer
    ids = [prompts.encode(tokenizer, s["code"], s.get("prompt"))["input_ids"] for s in samples]
    answers = {dtype: [greedy_answer(engine, p) for p in ids] for dtype, engine in engines.items()}
    result = {}
    for dtype, mine in answers.items():
        pairs = list(zip(mine, answers["float32"]))
        firsts = sorted(next((i for i, (a, b) in enumerate(zip(x, y)) if a != b), min(len(x), len(y)))
                        for x, y in pairs if x != y)
        result[dtype] = {"identical": sum(x == y for x, y in pairs), "of": len(pairs), "first_difference": firsts}
    return result


def cold_explain(dtype: str, base: str = "") -> float:
    """Seconds from starting ``mafioso explain FIZZBUZZ --max-new-tokens 1`` to its exit (the cache warm)."""
    env = {**os.environ, "MAFIOSO_DTYPE": dtype, "MAFIOSO_FEEDBACK_DB": "off"}  # keep no bench answers
    start = time.perf_counter()
    more = ["--base-model", base] if base else []
    done = subprocess.run([sys.executable, "-m", "mafioso", "explain", str(EXAMPLE), "--max-new-tokens", "1", *more],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"mafioso explain failed with MAFIOSO_DTYPE={dtype}:\n{done.stderr[-2000:]}")
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="warm measurements per dtype, interleaved")
    parser.add_argument("--cold-runs", type=int, default=3, help="cold explain runs per dtype, interleaved")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold explain")
    parser.add_argument("--agreement", type=int, default=0, metavar="N",
                        help="also compare greedy answers to the first N validation rows with fp32's (needs "
                        "float32 among --dtypes)")
    parser.add_argument("--base-model", default="", help="as for mafioso worker (default: embedded), with the "
                        "adapter shipped for it")
    parser.add_argument("--dtypes", nargs="+", choices=DTYPES, default=list(DTYPES), help="the weights measured")
    args = parser.parse_args()
    dtypes = tuple(args.dtypes)
    logging.basicConfig(level=logging.WARNING)

    from mafioso.core.cpu_dtype import cpu_dtype
    from mafioso.worker.engines import load_engine

    facts = machine()
    load_before = uptime()
    print(f"# {facts['cpu']}, avx512_bf16 {'yes' if facts['avx512_bf16'] else 'no'}, avx512_vnni "
          f"{'yes' if facts['avx512_vnni'] else 'no'}, {facts['threads']} threads, torch {facts['torch']}")
    print(f"# {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; load before: {load_before}")
    worker = lambda dtype: WorkerConfig(base_model=args.base_model, device="cpu", dtype=dtype,  # noqa: E731
                                        max_batch_size=1)
    code = EXAMPLE.read_text(encoding="utf-8")
    gen = GenerationConfig(max_new_tokens=TOKENS)
    engines, load_s = {}, {}
    for dtype in dtypes:
        start = time.perf_counter()
        engines[dtype] = load_engine(worker(dtype), gen)
        load_s[dtype] = time.perf_counter() - start
    config = engines[dtypes[0]].model.config.get_text_config()
    auto = str(cpu_dtype(config.hidden_size, config.vocab_size)).removeprefix("torch.")
    print(f"# base {args.base_model or 'embedded'}; MAFIOSO_DTYPE=auto chooses {auto} on this machine")
    ids = prompts.encode(engines[dtypes[0]].tokenizer, code, None)["input_ids"]
    fixed, answer, answers = {d: [] for d in dtypes}, {d: [] for d in dtypes}, {}
    for dtype in dtypes:  # warm-up: first calls build kernels
        fixed_answer(engines[dtype], ids)
    for _ in range(args.rounds):
        for dtype in dtypes:
            fixed[dtype].append(fixed_answer(engines[dtype], ids))
            start = time.perf_counter()
            [result] = engines[dtype].generate([(code, None)])
            answer[dtype].append((result.tokens, time.perf_counter() - start))
            answers[dtype] = result.text
    agreed = agreement(engines, args.agreement) if args.agreement else {}
    for engine in engines.values():
        engine.close()
    engines.clear()
    cold = {d: [] for d in dtypes}
    if not args.no_cold:
        for _ in range(args.cold_runs):
            for dtype in dtypes:
                cold[dtype].append(cold_explain(dtype, args.base_model))
    load_after = uptime()

    rows = {}
    for dtype in dtypes:
        seconds = statistics.median(fixed[dtype])
        tokens = statistics.median(t for t, _ in answer[dtype])
        answer_s = statistics.median(s for _, s in answer[dtype])
        rows[dtype] = {"tokens_per_s_120": round(TOKENS / seconds, 2), "seconds_120": round(seconds, 2),
                       "runs_120": [round(s, 2) for s in fixed[dtype]], "answer_tokens": tokens,
                       "answer_s": round(answer_s, 2), "answer_tokens_per_s": round(tokens / answer_s, 2),
                       "load_s": round(load_s[dtype], 1),
                       "cold_first_token_s": round(statistics.median(cold[dtype]), 1) if cold[dtype] else None,
                       "cold_runs": [round(s, 1) for s in cold[dtype]]}
    speed = lambda d: rows[d]["tokens_per_s_120"] if d in rows else float("nan")  # noqa: E731
    base = speed("bfloat16"), speed("float32")
    print(f"\n| dtype | 120-token answer, tokens/s (median of {args.rounds}) | vs bf16 | vs fp32 | real answer: "
          "tokens, s, tokens/s | load in the bench, s | cold explain, first token, s |")
    print("|---|---|---|---|---|---|---|")
    for dtype, row in rows.items():
        cold_cell = f"{row['cold_first_token_s']}" if row["cold_first_token_s"] is not None else "—"
        ratio = lambda other: "—" if other != other else f"{row['tokens_per_s_120'] / other:.2f}x"  # noqa: E731
        print(f"| {dtype} | {row['tokens_per_s_120']} | {ratio(base[0])} | {ratio(base[1])} | "
              f"{row['answer_tokens']}, {row['answer_s']}, "
              f"{row['answer_tokens_per_s']} | {row['load_s']} | {cold_cell} |")
    print(f"\n# load after: {load_after}")
    for dtype, row in agreed.items():
        print(f"# {dtype}: {row['identical']}/{row['of']} validation answers token-identical to fp32's; the others "
              f"first differ at token {row['first_difference']}")
    for dtype, text in answers.items():
        print(f"\n{dtype}: {text}")
    print(json.dumps({"machine": facts, "auto": auto, "load_before": load_before, "load_after": load_after,
                      "rounds": args.rounds, "rows": rows, "answers": answers, "agreement": agreed}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
