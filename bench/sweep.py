"""Train several recipes side by side on one GPU, evaluate each, print a table (issue: ship the adapter).

    python bench/sweep.py --base-model /tmp/gemma-3-270m-q4_k_m.gguf --out $OUT/sweep \
        --run r64_e3:--lora-r=64,--epochs=3 --run r16_e3:--lora-r=16,--epochs=3

Each run is `mafioso train` then `mafioso eval --compare-base` on data/validation.json, in its own process
(a 270M QLoRA run uses a fraction of an H100, so runs share the card). Results: OUT/<name>/adapter,
OUT/<name>/eval/metrics.json and OUT/sweep.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

METRICS = ("response_loss", "rouge_l", "identifier_recall", "grounded", "persona_rate", "code_leak_rate",
           "stop_rate", "mean_words", "tokens_per_s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--data", default="data/train.json")
    parser.add_argument("--validation", default="data/validation.json")
    parser.add_argument("--run", action="append", required=True, help="NAME:--flag=value,--flag=value")
    parser.add_argument("--eval-flags", default="", help="extra flags for mafioso eval, comma-separated")
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

    evals = {}
    for name in jobs:
        if not (out / name / "adapter" / "adapter_config.json").is_file():
            continue
        cmd = [*mafioso, "eval", "--base-model", args.base_model, "--data", args.validation,
               "--adapter", str(out / name / "adapter"), "--out", str(out / name / "eval"),
               *[f for f in args.eval_flags.split(",") if f]]
        log = open(out / name / "eval.log", "w")
        evals[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    results = {}
    for name, proc in evals.items():
        proc.wait()
        metrics_file = out / name / "eval" / "metrics.json"
        if metrics_file.is_file():
            metrics = json.loads(metrics_file.read_text())
            card = json.loads((out / name / "adapter" / "mafioso.json").read_text())
            results[name] = {"metrics": metrics.get("adapter", metrics), "train": card["stats"],
                             "command": card["command"]}
    (out / "sweep.json").write_text(json.dumps(results, indent=2))
    print("| run | " + " | ".join(METRICS) + " | train loss | eval loss | train tok/s | peak GB |")
    print("|---" * (len(METRICS) + 5) + "|")
    for name, r in results.items():
        m, t = r["metrics"], r["train"]
        cells = [f"{m.get(k, float('nan')):.3f}" if isinstance(m.get(k), (int, float)) else "-" for k in METRICS]
        print(f"| {name} | " + " | ".join(cells) +
              f" | {t['train_loss']:.3f} | {t['eval_loss']:.3f} | {t['train_tokens_per_s']} | {t['peak_gpu_memory_gb']} |")
    print(json.dumps({k: r["metrics"] for k, r in results.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
