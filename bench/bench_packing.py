"""The fast recipe's training step with a batch of packs joined into one sequence (TRL's padding-free collator)
and with each pack a row of its own (:class:`mafioso.trainer.packing.PackRows`, what ``mafioso train`` uses):
the same packs, the same weights, forward and backward timed, in one run (issue 24).

    python bench/bench_packing.py --base-model /tmp/bundle/gemma.gguf --batch-size 8 --steps 5
    python bench/bench_packing.py --base-model <a tiny model folder> --batch-size 4 --steps 2   # a CPU smoke run

The trainer is :func:`mafioso.trainer.train.setup`'s for ``--recipe fast`` with the given batch size and
``--max-length``; each collator feeds it the same ``--warmup`` + ``--steps`` batches of packs, in the data's
order, and the figures are over the last ``--steps``: seconds a step, tokens a second (the packs' own tokens,
padding not counted), the mean loss (the two must agree: same tokens, same labels) and, on a GPU, peak memory.
No optimizer step is taken, so both see the same weights. Prints a table last.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model", required=True)
    parser.add_argument("--data", default="data/train.json")
    parser.add_argument("--batch-size", type=int, default=8, help="packs a step (default: 8)")
    parser.add_argument("--max-length", type=int, default=2048, help="tokens a pack (default: 2048)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per collator (default: 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (default: 1)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.batch_size < 1:
        raise SystemExit("--steps and --batch-size must be at least 1, --warmup at least 0")
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from mafioso.core.config import TrainConfig, build
    from mafioso.trainer.packing import PackRows
    from mafioso.trainer.train import setup

    with tempfile.TemporaryDirectory() as tmp:  # the trainer's output folder: nothing is saved
        run = setup(build(TrainConfig, {"recipe": "fast", "base_model": args.base_model, "data": [args.data],
                                        "batch_size": args.batch_size, "max_length": args.max_length,
                                        "output": str(Path(tmp) / "adapter")}))
        results = measure(run, args, {"joined (TRL's padding-free)": DataCollatorForLanguageModeling(
            pad_token_id=run.trainer.data_collator.pad_token_id, padding_free=True),
            "a row per pack (PackRows)": PackRows(run.trainer.data_collator.pad_token_id)})
    print(f"\n{'GPU' if run.cuda else 'CPU'}, {args.base_model}, {args.steps} steps of {args.batch_size} packs "
          f"of up to {args.max_length} tokens (after {args.warmup}):")
    print("| batch | s a step | tokens/s | mean loss | peak GB |\n|---|---|---|---|---|")
    for name, r in results.items():
        peak = f"{r['peak_gb']:.2f}" if r["peak_gb"] is not None else "-"
        print(f"| {name} | {r['s_per_step']:.3f} | {r['tokens_per_s']:,.0f} | {r['loss']:.4f} | {peak} |")
    return 0


def measure(run, args: argparse.Namespace, collators: dict) -> dict[str, dict]:
    """Each collator's figures over the same batches of packs (see the module's doc)."""
    import torch

    trainer, model = run.trainer, run.trainer.model
    model.train()
    steps = args.warmup + args.steps
    packs = [trainer.train_dataset[i] for i in range(min(len(trainer.train_dataset), steps * args.batch_size))]
    if len(packs) < steps * args.batch_size:
        raise SystemExit(f"{len(packs)} packs: fewer than {steps} steps of {args.batch_size}")
    batches = [packs[i * args.batch_size:(i + 1) * args.batch_size] for i in range(steps)]
    results = {}
    for name, collate in collators.items():
        if run.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        seconds, tokens, losses = 0.0, 0, []
        for index, examples in enumerate(batches):
            batch = {key: value.to(model.device) if torch.is_tensor(value) else value
                     for key, value in collate(examples).items()}
            if run.cuda:
                torch.cuda.synchronize()
            started = time.perf_counter()
            loss = trainer.compute_loss(model, batch)
            loss.backward()
            if run.cuda:
                torch.cuda.synchronize()
            model.zero_grad(set_to_none=True)
            if index >= args.warmup:
                seconds += time.perf_counter() - started
                tokens += sum(len(example["input_ids"]) for example in examples)
                losses.append(loss.item())
        results[name] = {"s_per_step": seconds / args.steps, "tokens_per_s": tokens / seconds,
                         "loss": sum(losses) / len(losses),
                         "peak_gb": torch.cuda.max_memory_allocated() / 2**30 if run.cuda else None}
        print(f"{name}: {results[name]}", flush=True)
    return results


if __name__ == "__main__":
    raise SystemExit(main())
