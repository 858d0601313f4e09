"""Where a training step's time goes (issue 24): torch.profiler over a few optimizer steps of the trainer that
``mafioso train`` builds, its settings unchanged.

    python bench/profile_train.py --base-model /tmp/bundle/gemma.gguf --recipe fast --out $OUT/profile
    python bench/profile_train.py --base-model /tmp/bundle/gemma.gguf --recipe fast --batch-size 8 --out ...
    python bench/profile_train.py --base-model tests/tiny --recipe fast --skip 1 --steps 1 --out /tmp/p  # CPU smoke

The trainer is :func:`mafioso.trainer.train.setup`'s, from the same flags as ``mafioso train`` (every one of
them is accepted here). The first ``--skip`` optimizer steps warm up (allocator, kernels, caches); the next
``--steps`` run under the profiler, then training stops and nothing is saved. Prints each profiled step's wall
time and tokens, then the ops that took the most time: on the GPU (self device time) and on the host (self CPU
time), so a step bound by launches and syncs shows as host time the device does not match. Writes the tables to
OUT/profile.txt and the step figures to OUT/profile.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from mafioso.core.config import TrainConfig, add_arguments, from_args  # noqa: E402


def make_parser() -> argparse.ArgumentParser:
    """``mafioso train``'s flags plus the profile's own."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="a YAML recipe, as for mafioso train")
    parser.add_argument("--skip", type=int, default=10, help="optimizer steps before profiling (default: 10)")
    parser.add_argument("--steps", type=int, default=5, help="optimizer steps profiled (default: 5)")
    parser.add_argument("--rows", type=int, default=25, help="ops listed per table (default: 25)")
    parser.add_argument("--out", default="out/profile", help="folder for profile.txt and profile.json")
    add_arguments(parser, TrainConfig, skip=("output",))
    return parser


def profiler_callback(trainer, skip: int, steps: int, cuda: bool):
    """A trainer callback that profiles optimizer steps ``skip+1`` to ``skip+steps`` and then stops training;
    its ``.profile`` is the finished profiler and ``.steps`` each profiled step's seconds and tokens."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    from transformers import TrainerCallback

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    tally = PackTally.around(trainer)

    class Profiled(TrainerCallback):
        def __init__(self):
            self.profile, self.steps, self._mark, self._total = None, [], None, 0

        def on_step_end(self, args, state, control, **kwargs):
            sync()
            now = time.perf_counter()
            # the step's tokens, padding not counted: the packs' own tally, else TRL's (it reads the attention mask)
            if tally:
                tokens = tally.take(args.gradient_accumulation_steps)
            else:
                tokens, self._total = trainer._total_train_tokens - self._total, trainer._total_train_tokens
            if self._mark is not None:
                self.steps.append({"step": state.global_step, "seconds": round(now - self._mark, 4),
                                   "tokens": int(tokens)})
            if state.global_step == skip:
                activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
                self.profile = profile(activities=activities)
                self.profile.__enter__()
            if state.global_step == skip + steps:
                self.profile.__exit__(None, None, None)
                control.should_training_stop = True
                return
            self._mark = time.perf_counter() if state.global_step >= skip else None

    return Profiled()


class PackTally:
    """The trainer's pack collator (:class:`mafioso.trainer.packing.PackRows`), tallying each training batch's
    tokens in the order the batches are made: TRL's own tally counts one row of such a batch. The data loader
    makes one batch ahead, so a step's batches are the oldest in the tally; evaluation's rows (no packs) are not
    counted."""

    def __init__(self, collate):
        self.collate, self.made = collate, deque()

    @classmethod
    def around(cls, trainer) -> "PackTally | None":
        """Put a tally around the trainer's collator when it collates packs; None otherwise."""
        from mafioso.trainer.packing import PackRows

        if not isinstance(trainer.data_collator, PackRows):
            return None
        trainer.data_collator = tally = cls(trainer.data_collator)
        return tally

    def __call__(self, examples: list[dict]) -> dict:
        if "seq_lengths" in examples[0]:
            self.made.append(sum(len(example["input_ids"]) for example in examples))
        return self.collate(examples)

    def take(self, batches: int) -> int:
        """The tokens of the next ``batches`` training batches the trainer used (fewer at an epoch's end, where a
        last step may accumulate fewer and nothing is made ahead)."""
        return sum(self.made.popleft() for _ in range(min(batches, len(self.made))))


def main(argv: list[str] | None = None) -> int:
    """Set the trainer up, train ``--skip`` + ``--steps`` optimizer steps, print and write the profile."""
    args = make_parser().parse_args(argv)
    if args.skip < 1 or args.steps < 1:
        raise SystemExit("--skip and --steps must be at least 1")
    out = Path(args.out)
    args.output = str(out / "adapter")  # its checkpoint folder only; nothing is saved
    args.max_steps, args.save_steps = args.skip + args.steps, 10**9
    if not getattr(args, "data", None):
        args.data, args.validation = ["data/train.json"], getattr(args, "validation", None) or ["data/validation.json"]
    cfg = from_args(TrainConfig, args, args.config)

    from mafioso.core.errors import MafiosoError
    from mafioso.trainer.train import setup

    try:
        run = setup(cfg)
    except MafiosoError as exc:
        raise SystemExit(f"error: {exc}") from None
    callback = profiler_callback(run.trainer, args.skip, args.steps, run.cuda)
    run.trainer.add_callback(callback)
    run.trainer.train()  # max_steps goes round the data as often as it takes
    seconds = sum(s["seconds"] for s in callback.steps)
    tokens = sum(s["tokens"] for s in callback.steps)
    summary = {"device": "cuda" if run.cuda else "cpu", "recipe": cfg.recipe, "skip": args.skip,
               "steps": callback.steps, "tokens_per_s": round(tokens / seconds, 1)}
    averages = callback.profile.key_averages()
    tables = [f"# {len(callback.steps)} steps after {args.skip}: {tokens} tokens in {seconds:.3f} s, "
              f"{summary['tokens_per_s']} tokens/s (under the profiler)"]
    if run.cuda:
        tables += ["\n## by self device time", averages.table(sort_by="self_device_time_total", row_limit=args.rows)]
    tables += ["\n## by self CPU time", averages.table(sort_by="self_cpu_time_total", row_limit=args.rows)]
    out.mkdir(parents=True, exist_ok=True)
    (out / "profile.txt").write_text("\n".join(tables) + "\n")
    (out / "profile.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("\n".join(tables))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
