"""``mafioso eval``: score an adapter (and, with ``--compare-base``, its base model) on a dataset.

    mafioso eval --data data/validation.json --out out/eval --adapter out/adapter --compare-base
    mafioso eval --data data/validation.json --out out/eval --adapter out/retrained --compare default

For each model: the response-only validation loss and perplexity (teacher-forced, the same
``prompts.encode`` rows as training), then greedy answers in batches, scored by :mod:`mafioso.trainer.metrics`.
Before any model loads, every dataset snippet is run once in :mod:`mafioso.trainer.sandbox` (this is the only
command that runs code, and only the dataset's own), so the ``grounded`` check can hold "it prints 5" to the
real output. Writes into ``--out``:

* ``predictions.jsonl`` - one row per sample for the model named by ``--adapter``, with its
  ``unsupported`` claims;
* ``base/predictions.jsonl`` - the same for the base model (``--compare-base`` only);
* ``compare/predictions.jsonl`` - the same for the adapter named by ``--compare`` (same samples, same
  decoding, same base); the table and chart put it first and ``--adapter`` second, the Δ column is
  ``--adapter`` minus ``--compare``, and :func:`gate` says whether ``--adapter`` may replace it;
* ``metrics.json`` - ``{"adapter": {...}, "base": {...}, "reference": {...}, "config": {...}, "samples": N}``
  (with ``--adapter none`` and no comparison, the one model's metrics are under ``"base"``; ``reference``
  scores the dataset's own answers, the ceiling of the text metrics);
* ``comparison.png`` - one panel per metric, one bar per model (base vs adapter with ``--compare-base``).

A markdown table of the metrics is printed to stdout.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import logging
import time
from pathlib import Path

from mafioso.core.config import GenerationConfig, WorkerConfig
from mafioso.core.config import add_arguments as add_config_arguments
from mafioso.core.errors import ConfigError, DatasetError
from mafioso.core.settings import load
from mafioso.prompts import DEFAULT_PERSONA
from mafioso.prompts import persona as find_persona
from mafioso.trainer.dataset import Sample, load_samples
from mafioso.trainer.grounding import unsupported_claims
from mafioso.trainer.metrics import Prediction, response_nll, summarize
from mafioso.trainer.sandbox import SnippetRunner

log = logging.getLogger(__name__)

#: The metrics drawn in the chart and printed in the table, in order, with their labels.
SHOWN = {
    "loss": "validation loss", "perplexity": "perplexity", "rouge_l_f1": "ROUGE-L F1",
    "identifier_recall": "identifier recall", "grounded": "grounded", "grounded_model": "grounded before the check",
    "persona_rate": "persona rate", "code_leak_rate": "code-leak rate", "stop_rate": "stop rate",
    "loop_rate": "loop rate", "mean_words": "mean words", "tokens_per_s": "tokens/s",
}
#: Which way is better, per shown metric (mean words: closest to the reference answers).
BETTER = {"loss": "↓", "perplexity": "↓", "rouge_l_f1": "↑", "identifier_recall": "↑", "grounded": "↑",
          "grounded_model": "↑",
          "persona_rate": "↑", "code_leak_rate": "↓", "stop_rate": "↑", "loop_rate": "↓",
          "mean_words": "≈ ref", "tokens_per_s": "↑"}
#: The count behind a metric when it is not every sample (recall needs names in the code).
SAMPLES_OF = {"identifier_recall": "identifier_samples", "grounded": "grounded_samples",
              "grounded_model": "grounded_samples"}
#: Metrics between 0 and 1, drawn on a fixed 0-1 axis so small differences do not look large.
UNIT_SCALE = {"rouge_l_f1", "identifier_recall", "grounded", "grounded_model", "persona_rate", "code_leak_rate",
              "stop_rate", "loop_rate"}
#: Metrics of the dataset's own answers drawn as a dashed line: what a model could reach.
REFERENCE_SHOWN = ("identifier_recall", "grounded", "persona_rate", "mean_words")
#: The gate for a new default adapter (README, "From users' ratings back to training"): none of these may drop
#: by more than the noise measured between two training seeds of one recipe (docs/BENCHMARKS.md: grounded
#: 0.05-0.10, persona 0.12-0.16 for Gemma; stop rate not measured, one answer in 20 allowed).
GATE_NOISE = {"grounded": 0.05, "persona_rate": 0.15, "stop_rate": 0.05}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``mafioso eval``."""
    worker = {f.name: f for f in dataclasses.fields(WorkerConfig)}

    def help_of(name: str) -> str:  # the model flags keep their MAFIOSO_* values unless given, as in the worker
        return f"{worker[name].metadata['help']} (MAFIOSO_{name.upper()})"

    parser.add_argument("--data", action="append", required=True, metavar="FILE",
                        help="dataset file(s) to score (repeat for several)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for predictions, metrics and chart")
    parser.add_argument("--adapter", default=argparse.SUPPRESS, help=help_of("adapter"))
    parser.add_argument("--base-model", default=argparse.SUPPRESS, help=help_of("base_model"))
    parser.add_argument("--compare-base", action="store_true",
                        help="also score the base model without the adapter, in the same run")
    parser.add_argument("--compare", metavar="OTHER_ADAPTER",
                        help="also score this adapter (a folder or 'default') on the same samples with the same "
                             "decoding, side by side, and say whether --adapter passes the gate to replace it")
    parser.add_argument("--limit", type=int, help="score only the first N samples")
    parser.add_argument("--batch-size", type=int, default=8, help="samples generated (and scored) together")
    parser.add_argument("--quantization", default=argparse.SUPPRESS, choices=("nf4", "int8", "none"),
                        help=help_of("quantization"))
    parser.add_argument("--device", default=argparse.SUPPRESS, choices=("auto", "cpu", "cuda"),
                        help=help_of("device"))
    parser.add_argument("--dtype", default=argparse.SUPPRESS, choices=("auto", "bfloat16", "float32", "int8"),
                        help=help_of("dtype"))
    parser.add_argument("--fast-decode", action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                        help=help_of("fast_decode"))
    parser.add_argument("--compile-decode", action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                        help=help_of("compile_decode"))
    add_config_arguments(parser, GenerationConfig)  # decoding exactly as the worker would: same flags, same env


def select_samples(data: list[str], limit: int | None) -> list[Sample]:
    """The dataset's samples, the first ``limit`` of them when given."""
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit must be at least 1, got {limit}")
    samples = load_samples(data)
    if not samples:
        raise DatasetError([f"no samples in {', '.join(data)}"])
    return samples[:limit] if limit else samples


def batches(samples: list[Sample], size: int) -> list[list[int]]:
    """Sample indices in batches of ``size``, similar code lengths together so padding stays small."""
    order = sorted(range(len(samples)), key=lambda i: len(samples[i].code))
    return [order[i:i + size] for i in range(0, len(order), size)]


def generate_all(engine, samples: list[Sample], batch_size: int, label: str) -> tuple[list[Prediction], float]:
    """Every sample's answer, in dataset order, and the total wall time spent generating."""
    from tqdm.auto import tqdm

    results: dict[int, Prediction] = {}
    spent = 0.0
    with tqdm(total=len(samples), desc=f"{label}: generating", unit="sample") as bar:
        for chunk in batches(samples, batch_size):
            started = time.perf_counter()
            outputs = engine.generate([(samples[i].code, samples[i].prompt) for i in chunk])
            elapsed = time.perf_counter() - started
            spent += elapsed
            for i, out in zip(chunk, outputs, strict=True):
                s = samples[i]
                # The engine scrubs leaked code from the text and flags it; count the flag, not the scrubbed text.
                leak = bool(getattr(out, "code_leak", False))
                dropped = int(getattr(out, "dropped", 0))  # sentences the claim post-check removed
                # the model's own answer: its first, when the post-check had it decoded again (worker/retry.py)
                raw = getattr(out, "first_text", "") or (out.raw_text if dropped else "")
                results[i] = Prediction(s.key, s.code, s.explanation, out.text, out.tokens, round(elapsed, 4),
                                        out.finished, leak, bool(getattr(out, "looped", False)), dropped=dropped,
                                        raw_prediction=raw, retried=int(getattr(out, "retried", 0)))
            bar.update(len(chunk))
    return [results[i] for i in range(len(samples))], spent


def response_loss(engine, samples: list[Sample], batch_size: int, label: str) -> tuple[float, int]:
    """Token-weighted mean NLL over the response tokens (+EOS) of every sample, and their count."""
    from tqdm.auto import tqdm

    from mafioso.prompts import encode

    tokenizer = engine.tokenizer
    rows = [encode(tokenizer, s.code, s.prompt, s.explanation, persona_name=engine.persona,
                   prompt_format=engine.prompt_format) for s in samples]
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with tqdm(total=len(rows), desc=f"{label}: loss", unit="sample") as bar:
        total, count = response_nll(engine.model, [rows[i] for i in order], pad, engine.device, batch_size, bar)
    return total / count, count


def check_claims(predictions: list[Prediction], runner: SnippetRunner) -> list[Prediction]:
    """Each prediction with the claims its code does not support (the code's output from ``runner``)."""
    checked = []
    for p in predictions:
        run = runner.run(p.code)  # a dataset snippet, never chat input
        claims = unsupported_claims(p.code, p.prediction, run.output, run.raised)
        raw = unsupported_claims(p.code, p.raw_prediction, run.output, run.raised) if p.raw_prediction else None
        checked.append(dataclasses.replace(p, unsupported=claims, unsupported_raw=raw))
    return checked


def reference_metrics(samples: list[Sample], runner: SnippetRunner, persona: str = DEFAULT_PERSONA) -> dict:
    """The text metrics of the dataset's own answers: the ceiling a model is measured against."""
    answers = [Prediction(s.key, s.code, s.explanation, s.explanation, 0, 0.0, True) for s in samples]
    metrics = summarize(check_claims(answers, runner), None, 0, 0.0, find_persona(persona).markers)
    return {key: metrics[key] for key in ("identifier_recall", "grounded", "grounded_samples", "unsupported",
                                          "persona_rate", "mean_words")}


def evaluate_engine(engine, samples: list[Sample], batch_size: int, label: str,
                    runner: SnippetRunner) -> tuple[dict, list[Prediction]]:
    """Loss, answers (with their unsupported claims) and every metric of one loaded engine."""
    loss, count = response_loss(engine, samples, batch_size, label)
    predictions, spent = generate_all(engine, samples, batch_size, label)
    predictions = check_claims(predictions, runner)
    return summarize(predictions, loss, count, spent, find_persona(engine.persona).markers), predictions


def write_predictions(path: Path, predictions: list[Prediction]) -> None:
    """One JSON object per line, in dataset order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for p in predictions:
            handle.write(json.dumps(dataclasses.asdict(p), ensure_ascii=False) + "\n")


def _cell(value, sign: str = "") -> str:
    """A metric for the table: 4 decimals for small values, 1 for large ones, n/a for none."""
    if value is None:
        return "n/a"
    return f"{value:{sign}.4f}" if abs(value) < 10 else f"{value:{sign}.1f}"


def markdown_table(results: dict[str, dict]) -> str:
    """The shown metrics as a markdown table, one column per model (and a delta with two models)."""
    names = list(results)
    header = ["metric", *names] + (["Δ"] if len(names) == 2 else [])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key, text in SHOWN.items():
        values = [results[name].get(key) for name in names]
        cells = [text, *map(_cell, values)]
        if len(names) == 2:
            a, b = values
            cells.append(_cell(None if a is None or b is None else b - a, sign="+"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_chart(results: dict[str, dict], path: Path, samples: int, reference: dict | None = None) -> None:
    """A PNG with one small bar panel per shown metric, one bar per model (their scales differ); each panel
    says which way is better and how many samples it scored, and the reference answers' value, where there
    is one, is a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    colors = ["#7f7f7f", "#b22222"][-len(names):] if len(names) <= 2 else None
    columns = 4
    rows = -(-len(SHOWN) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(12, 3 * rows))
    for ax in axes.flat[len(SHOWN):]:
        ax.set_visible(False)
    for ax, (key, text) in zip(axes.flat, SHOWN.items()):
        values = [results[name].get(key) for name in names]
        bars = ax.bar(names, [v or 0.0 for v in values], color=colors)
        for bar, value in zip(bars, values):
            ax.annotate(_cell(value), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=8)
        counts = sorted({results[name].get(SAMPLES_OF[key], samples) if key in SAMPLES_OF else samples
                         for name in names})
        ax.set_title(f"{text}  ({BETTER[key]} better, n={'/'.join(map(str, counts))})", fontsize=9)
        top = max([v for v in values if v] or [1.0])
        if reference and key in REFERENCE_SHOWN and reference.get(key) is not None:
            ax.axhline(reference[key], color="#1f77b4", linestyle="--", linewidth=1, label="reference answers")
            ax.legend(fontsize=7, loc="best")
            top = max(top, reference[key])
        ax.set_ylim(0, 1.1 if key in UNIT_SCALE else 1.2 * top)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("Mafioso: " + " vs ".join(names) + f" ({samples} samples)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def gate(current: dict, candidate: dict, noise: dict[str, float] = GATE_NOISE) -> tuple[bool, list[str]]:
    """Whether ``candidate`` may replace ``current``: no metric of ``noise`` drops by more than its noise; and
    one line per metric saying how it moved."""
    lines, ok = [], True
    for key, allowed in noise.items():
        a, b = current.get(key), candidate.get(key)
        if a is None or b is None:
            lines.append(f"{SHOWN[key]}: not measured")
            continue
        passed = a - b <= allowed + 1e-9
        ok = ok and passed
        lines.append(f"{SHOWN[key]}: {a:.3f} -> {b:.3f} ({b - a:+.3f}; a drop over {allowed} fails): "
                     f"{'ok' if passed else 'FAILS'}")
    return ok, lines


def _label(spec: str) -> str:
    return spec if spec in ("default", "none") else Path(spec).name or spec


def score_model(cfg: WorkerConfig, gen: GenerationConfig, samples: list[Sample], batch_size: int,
                label: str, runner: SnippetRunner, persona: str | None = None) -> tuple[dict, list[Prediction], str]:
    """Load one engine, score it, and free it: metrics, predictions and the device it ran on. ``persona``: the
    voice to prompt and score it in (default: its adapter's; the bare base is asked in the adapter's)."""
    import torch

    from mafioso.worker import engines

    engine = engines.load_engine(cfg, gen, persona=persona)
    device = str(engine.device)
    try:
        metrics, predictions = evaluate_engine(engine, samples, batch_size, label, runner)
    finally:
        engine.close()
    del engine  # free the model before the next one loads: two copies may not fit on a small GPU
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return metrics, predictions, device


def run(args: argparse.Namespace) -> int:
    """Score the model(s), write predictions, metrics and chart, print the table."""
    from mafioso.core.files import sha256_file
    from mafioso.worker.engine import adapter_folder, adapter_persona, base_of

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    # the worker's settings, read as the worker reads them (core/settings.py): defaults → MAFIOSO_* → flags
    model_flags = ("adapter", "base_model", "device", "quantization", "dtype", "fast_decode", "compile_decode")
    cfg = load(WorkerConfig, {**{k: getattr(args, k) for k in model_flags if hasattr(args, k)},
                              "max_batch_size": args.batch_size, "adapters": ""})
    gen = load(GenerationConfig, args)
    if args.compare and args.compare_base:
        raise ConfigError("use --compare OTHER_ADAPTER or --compare-base, not both (one comparison per run)")
    if args.compare and "none" in (args.compare, cfg.adapter):
        raise ConfigError("--compare puts two adapters side by side; to compare with the bare base use "
                          "--compare-base")
    if args.compare_base and cfg.adapter == "none":
        raise ConfigError("--compare-base compares an adapter with its base; with --adapter none there is no "
                          "adapter (drop --compare-base, or name one with --adapter)")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    samples = select_samples(args.data, args.limit)
    log.info("scoring %d samples from %s", len(samples), ", ".join(args.data))
    out.mkdir(parents=True, exist_ok=True)
    stale_files = (out / "base" / "predictions.jsonl", out / "compare" / "predictions.jsonl", out / "comparison.png")
    for stale in stale_files:  # left by an earlier run
        stale.unlink(missing_ok=True)
    # Pin the base now, so the --compare-base run loads exactly the weights under the adapter.
    cfg = dataclasses.replace(cfg, base_model=base_of(cfg.base_model, adapter_folder(cfg.adapter, cfg.base_model)))
    persona = adapter_persona(adapter_folder(cfg.adapter, cfg.base_model))
    runner = SnippetRunner()  # every snippet runs once, before a model takes the memory
    reference = reference_metrics(samples, runner, persona)
    ran = runner.summary()
    log.info("ran %d snippets (isolation: %s), %d runnable; the reference answers score grounded %.3f",
             ran["snippets"], ran["isolation"], ran["runnable"], reference["grounded"])

    label = "base" if cfg.adapter == "none" else "adapter"
    results = {}
    results[label], predictions, device = score_model(cfg, gen, samples, args.batch_size, label, runner)
    write_predictions(out / "predictions.jsonl", predictions)
    if args.compare_base:
        base_cfg = dataclasses.replace(cfg, adapter="none")
        results["base"], predictions, _ = score_model(base_cfg, gen, samples, args.batch_size, "base", runner,
                                                      persona)
        write_predictions(out / "base" / "predictions.jsonl", predictions)
        results = {"base": results["base"], "adapter": results["adapter"]}  # table and chart: base first
    verdict = None
    if args.compare:
        other = _label(args.compare)
        mine = _label(cfg.adapter)
        other, mine = (other, mine) if other != mine else (f"{other} (compare)", mine)
        compare_cfg = dataclasses.replace(cfg, adapter=args.compare)  # the same pinned base and decoding
        compared, predictions, _ = score_model(compare_cfg, gen, samples, args.batch_size, other, runner)
        write_predictions(out / "compare" / "predictions.jsonl", predictions)
        passed, reasons = gate(compared, results["adapter"])
        verdict = {"current": args.compare, "candidate": cfg.adapter, "replaces_default": passed,
                   "noise": GATE_NOISE, "reasons": reasons}
        results = {other: compared, mine: results["adapter"]}  # table and chart: the current one first

    config = {
        "data_files": {path: sha256_file(Path(path)) for path in args.data},
        "adapter": cfg.adapter, "base_model": cfg.base_model, "compare_base": args.compare_base,
        "compare": args.compare,
        "limit": args.limit, "batch_size": args.batch_size, "quantization": cfg.quantization, "dtype": cfg.dtype,
        "device": device, "generation": dataclasses.asdict(gen), "sandbox": runner.summary(),
    }
    extra = {"gate": verdict} if verdict else {}
    (out / "metrics.json").write_text(json.dumps({**results, "reference": reference, "config": config,
                                                  "samples": len(samples), **extra}, indent=2) + "\n")
    write_chart(results, out / "comparison.png", len(samples), reference)
    print(markdown_table(results))
    if verdict:
        print(f"\ngate: {'PASS' if verdict['replaces_default'] else 'FAIL'}: {cfg.adapter} "
              f"{'may replace' if verdict['replaces_default'] else 'does not replace'} {args.compare}")
        for line in verdict["reasons"]:
            print(f"- {line}")
    for name, metrics in results.items():
        log.info("%s: unsupported claims %s (details per answer in predictions.jsonl)", name, metrics["unsupported"])
    log.info("predictions and metrics written to %s", out)
    return 0
