"""Training speed and quality of the default QLoRA recipe and the fast one, in one run on the same data (issue 24).

    python bench/bench_train.py --base-model /tmp/bundle/gemma.gguf --epochs 1 --out $OUT/bench_train
    python bench/bench_train.py --base-model /tmp/bundle/gemma.gguf --epochs 1 --eval --out $OUT/bench_train \\
        --run qlora --run fast --run fast_b4:--recipe=fast,--batch-size=4
    python bench/bench_train.py --base-model tests/tiny --max-steps 2 --out /tmp/bt   # a CPU smoke run

Each run is ``mafioso train`` in a fresh process, one after the other (alone on the card), with the same
``--data``, ``--validation``, ``--seed`` and ``--epochs`` (or ``--max-steps``). A run is a recipe's name, or
``NAME:--flag=value,...`` for any other flags (``--recipe`` among them); the first run is the baseline. The
figures come from the adapter's ``mafioso.json``: train tokens/s (the tokens of the training rows, padding never
counted, over the trainer's own runtime), the run's time with set-up, peak GPU memory, train loss and eval loss
(the same unpacked batches of the validation rows for every recipe); the table adds each process's wall time.
With ``--eval``, ``mafioso eval --adapter RUN --compare BASELINE`` scores every other run's adapter against the
baseline's on the validation rows (grounded, persona, identifier recall, stop rate) and gives eval's gate
verdict: no metric dropped by more than its noise.

Writes OUT/<run>/ (the adapter, train.log), OUT/eval-<run>/ and OUT/bench_train.json; prints a table last.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

TRAIN = ("train_tokens_per_s", "train_runtime_s", "peak_gpu_memory_gb", "train_loss", "eval_loss",
         "optimizer_steps", "train_tokens")
SCORES = ("loss", "grounded", "persona_rate", "identifier_recall", "stop_rate")


def parse_run(spec: str) -> tuple[str, list[str]]:
    """``NAME`` (a recipe) or ``NAME:--flag=value,...`` as a run name and its extra ``mafioso train`` flags."""
    name, _, flags = spec.partition(":")
    if not name or "/" in name:
        raise SystemExit(f"--run {spec!r}: expected NAME or NAME:--flag=value,... (NAME without '/')")
    return name, [f for f in flags.split(",") if f] if flags else ["--recipe", name]


def train(args: argparse.Namespace, name: str, flags: list[str], out: Path) -> dict:
    """One ``mafioso train`` process; its adapter's recorded figures plus the process's wall time."""
    adapter = out / name
    cmd = [sys.executable, "-m", "mafioso", "train", "--base-model", args.base_model, "--output", str(adapter),
           "--seed", str(args.seed), "--save-steps", "100000",
           *[part for path in args.data for part in ("--data", path)],
           *[part for path in args.validation for part in ("--validation", path)],
           *(["--max-steps", str(args.max_steps)] if args.max_steps else ["--epochs", str(args.epochs)]), *flags]
    started = time.time()
    with open(out / f"{name}.train.log", "w") as log:
        done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
    wall = round(time.time() - started, 1)
    print(f"train {name}: exit {done.returncode} after {wall} s", flush=True)
    if done.returncode != 0:
        return {"error": f"exit {done.returncode}; see {out / (name + '.train.log')}", "wall_s": wall}
    info = json.loads((adapter / "mafioso.json").read_text())
    result = {**{key: info["stats"].get(key) for key in TRAIN}, "wall_s": wall, "recipe": info["config"]["recipe"],
              "command": info["command"]}
    # each run's figures as soon as it ends: a call cut short by its time limit still shows the runs that finished
    print(f"  {name}: " + ", ".join(f"{key} {_cell(result[key])}" for key in TRAIN), flush=True)
    return result


def evaluate(args: argparse.Namespace, name: str, baseline: str, out: Path) -> dict:
    """``mafioso eval`` of run ``name``'s adapter against the baseline's: both runs' scores and the gate."""
    folder = out / f"eval-{name}"
    cmd = [sys.executable, "-m", "mafioso", "eval", "--base-model", args.base_model, "--adapter", str(out / name),
           "--compare", str(out / baseline), "--out", str(folder),
           *[part for path in args.validation or args.data for part in ("--data", path)], *args.eval_flags.split()]
    with open(out / f"eval-{name}.log", "w") as log:
        done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
    print(f"eval {name} against {baseline}: exit {done.returncode}", flush=True)
    if done.returncode != 0:
        return {"error": f"exit {done.returncode}; see {out / ('eval-' + name + '.log')}"}
    metrics = json.loads((folder / "metrics.json").read_text())
    return {"scores": {run: {key: metrics[run].get(key) for key in SCORES} for run in (baseline, name)},
            "gate": metrics["gate"]}


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.4g}"
    return "-" if value is None else f"{value:,}" if isinstance(value, int) else str(value)


def table(results: dict, evals: dict) -> str:
    """The runs side by side as markdown, with the eval scores and gate verdicts when there are any."""
    keys = ("train_tokens_per_s", "train_runtime_s", "wall_s", "peak_gpu_memory_gb", "train_loss", "eval_loss",
            "optimizer_steps")
    lines = ["| run | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, r in results.items():
        cells = [r["error"]] + [""] * (len(keys) - 1) if "error" in r else [_cell(r.get(k)) for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for name, e in evals.items():
        if "error" in e:
            lines.append(f"\neval {name}: {e['error']}")
            continue
        lines += ["", "| eval | " + " | ".join(SCORES) + " |", "|---" * (len(SCORES) + 1) + "|"]
        lines += [f"| {run} | " + " | ".join(_cell(s[k]) for k in SCORES) + " |" for run, s in e["scores"].items()]
        verdict = "PASS (within noise)" if e["gate"]["replaces_default"] else "FAIL"
        lines += [f"gate {name} vs the baseline: {verdict}", *[f"- {line}" for line in e["gate"]["reasons"]]]
    return "\n".join(lines)


def make_parser() -> argparse.ArgumentParser:
    """The bench's flags."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model", required=True, help="what `mafioso train --base-model` takes")
    parser.add_argument("--data", action="append", help="training file(s) (default: data/train.json)")
    parser.add_argument("--validation", action="append", help="validation file(s) (default: data/validation.json)")
    parser.add_argument("--epochs", type=float, default=1.0, help="epochs of every run (default: 1)")
    parser.add_argument("--max-steps", type=int, default=0, help="optimizer steps of every run, in place of epochs")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--run", action="append", metavar="NAME[:FLAGS]",
                        help="a run: a recipe's name, or NAME:--flag=value,... (default: qlora, then fast)")
    parser.add_argument("--eval", action="store_true", help="score every run's adapter against the first's")
    parser.add_argument("--eval-flags", default="", help="extra flags for mafioso eval, e.g. '--limit 40'")
    parser.add_argument("--out", default="out/bench_train", help="folder for adapters, logs and results")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Train every run in turn, optionally score them, print the table and write bench_train.json."""
    args = make_parser().parse_args(argv)
    args.data = args.data or ["data/train.json"]
    args.validation = args.validation or ["data/validation.json"]
    runs = dict(map(parse_run, args.run or ["qlora", "fast"]))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {name: train(args, name, flags, out) for name, flags in runs.items()}
    baseline, *others = runs
    evals = {name: evaluate(args, name, baseline, out) for name in others
             if args.eval and "error" not in results[name] and "error" not in results[baseline]}
    (out / "bench_train.json").write_text(json.dumps({"runs": results, "eval": evals, "args": vars(args)},
                                                     indent=2) + "\n")
    print(table(results, evals))
    return 1 if any("error" in r for r in [*results.values(), *evals.values()]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
