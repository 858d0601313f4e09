"""Train several recipes side by side on one GPU, evaluate each, print a table (issue: ship the adapter).

    python bench/sweep.py --base-model /tmp/gemma-3-270m-q4_k_m.gguf --out $OUT/sweep \
        --run r64_e3:--lora-r=64,--epochs=3 --run r16_e3:--lora-r=16,--epochs=3

Each run is `mafioso train` then `mafioso eval` on data/validation.json, in its own process (a 270M QLoRA
run uses a fraction of an H100, so runs share the card); `--with-base` scores the bare base too (row
`base`). Results: OUT/<name>/adapter, OUT/<name>/eval/metrics.json and OUT/sweep.json. A run trained with
`--epoch-snapshots` is also scored after each earlier epoch (rows `<name>@e<N>`, OUT/<name>/eval-e<N>/; from
`--snapshots-from` on). Evals run side by side (``--eval-parallel``); one that runs out of GPU memory beside
the others runs again alone once they end.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

OUT_OF_MEMORY = re.compile(r"out of memory", re.IGNORECASE)  # torch's OutOfMemoryError: "CUDA out of memory."
METRICS = ("loss", "rouge_l_f1", "identifier_recall", "grounded", "persona_rate", "code_leak_rate", "stop_rate",
           "loop_rate", "mean_words", "tokens_per_s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--data", default="data/train.json")
    parser.add_argument("--validation", default="data/validation.json")
    parser.add_argument("--run", action="append", required=True, help="NAME:--flag=value,--flag=value")
    parser.add_argument("--eval-flags", default="", help="extra flags for mafioso eval, comma-separated")
    parser.add_argument("--with-base", action="store_true", help="also score the bare base model (row 'base')")
    parser.add_argument("--snapshots-from", type=int, default=1, metavar="EPOCH",
                        help="score the epoch snapshots of runs trained with --epoch-snapshots from this epoch on")
    parser.add_argument("--eval-parallel", type=int, default=0,
                        help="most evals run at once (0: all; each holds a KV cache and loss batches on the GPU)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    mafioso = [sys.executable, "-m", "mafioso"]

    jobs = {}
    for spec in args.run:
        name, _, flags = spec.partition(":")
        extra = [f for f in flags.split(",") if f]
        (out / name).mkdir(exist_ok=True)
        cmd = [*mafioso, "train", "--base-model", args.base_model, "--data", args.data,
               "--validation", args.validation, "--output", str(out / name / "adapter"), *extra]
        log = open(out / name / "train.log", "w")
        jobs[name] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), time.time(), cmd)
    for name, (proc, start, cmd) in jobs.items():
        proc.wait()
        print(f"train {name}: exit {proc.returncode} after {time.time() - start:.0f}s", flush=True)

    adapters, eval_dirs = {}, {}
    for name in jobs:
        if (out / name / "adapter" / "adapter_config.json").is_file():
            adapters[name], eval_dirs[name] = str(out / name / "adapter"), out / name / "eval"
        for snapshot in sorted((out / name / "adapter.epochs").glob("epoch-*/adapter_config.json")):
            epoch = snapshot.parent.name.removeprefix("epoch-")
            if int(epoch) < args.snapshots_from:
                continue
            adapters[f"{name}@e{epoch}"] = str(snapshot.parent)
            eval_dirs[f"{name}@e{epoch}"] = out / name / f"eval-e{epoch}"
    if args.with_base:
        (out / "base").mkdir(exist_ok=True)
        adapters["base"], eval_dirs["base"] = "none", out / "base" / "eval"
    evals = {name: ([*mafioso, "eval", "--base-model", args.base_model, "--data", args.validation,
                     "--adapter", adapter, "--out", str(eval_dirs[name]),
                     *[f for f in args.eval_flags.split(",") if f]], eval_dirs[name].with_suffix(".log"))
             for name, adapter in adapters.items()}
    run_evals(evals, args.eval_parallel)
    results = {}
    for name in evals:
        metrics_file = eval_dirs[name] / "metrics.json"
        if metrics_file.is_file():
            metrics = json.loads(metrics_file.read_text())
            card_file = Path(adapters[name]) / "mafioso.json"
            card = json.loads(card_file.read_text()) if card_file.is_file() else {"stats": {}, "command": ""}
            results[name] = {"metrics": metrics.get("adapter", metrics.get("base")), "train": card["stats"],
                             "command": card["command"]}
    (out / "sweep.json").write_text(json.dumps(results, indent=2))
    print("| run | " + " | ".join(METRICS) + " | train loss | eval loss | train tok/s | peak GB |")
    print("|---" * (len(METRICS) + 5) + "|")
    for name, r in results.items():
        m, t = r["metrics"], r["train"]
        cells = [f"{m.get(k, float('nan')):.3f}" if isinstance(m.get(k), (int, float)) else "-" for k in METRICS]
        train = [f"{t[k]:.3f}" if isinstance(t.get(k), float) else str(t.get(k, "-"))
                 for k in ("train_loss", "eval_loss", "train_tokens_per_s", "peak_gpu_memory_gb")]
        print(f"| {name} | " + " | ".join(cells + train) + " |")
    print(json.dumps({k: r["metrics"] for k, r in results.items()}))
    return 0


def run_evals(commands: dict[str, tuple[list[str], Path]], parallel: int) -> dict[str, int]:
    """Run each ``name: (command, log)``, at most ``parallel`` at once (0: all), each writing to its log; one that
    ran out of GPU memory beside the others (twelve evals of batch 64 overfill an H100) runs again, alone, after
    them. Returns each one's exit status."""
    running: dict[str, subprocess.Popen] = {}
    for name, (cmd, log) in commands.items():
        if parallel and sum(proc.poll() is None for proc in running.values()) >= parallel:
            next(proc for proc in running.values() if proc.poll() is None).wait()
        with open(log, "w") as out:
            running[name] = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    codes = {name: proc.wait() for name, proc in running.items()}
    for name, code in codes.items():
        cmd, log = commands[name]
        if code != 0 and OUT_OF_MEMORY.search(log.read_text(errors="replace")):
            print(f"eval {name}: out of GPU memory beside the others; again, alone", flush=True)
            with open(log, "w") as out:
                codes[name] = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT).returncode
    return codes


if __name__ == "__main__":
    raise SystemExit(main())
