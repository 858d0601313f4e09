"""The recipes behind ``mafioso train``: one linear script, setup → train → save.

    mafioso train --data data/train.json --validation data/validation.json --output out/adapter
    mafioso train --recipe fast --data data/train.json --validation data/validation.json --output out/adapter

The default recipe, ``qlora``: on CUDA the base is loaded in 4-bit NF4 (double quant, bf16 compute) and trained
with paged AdamW 32-bit in bf16, with gradient checkpointing, on padded batches of 2 rows. Without CUDA the same
path runs on the CPU: bitsandbytes NF4 with fp32 compute, plain AdamW, no mixed precision. ``--recipe fast``
(core/config.py: RECIPES) keeps the base in bf16 (fp32 on the CPU), recomputes nothing, and packs whole rows
into sequences of ``max_length`` tokens without padding: each pack is a row of the batch with each training row's
own ``position_ids``, from which transformers builds a block-diagonal mask for sdpa and eager attention, so no row
attends to another (tests/trainer/test_fast_recipe.py holds the loss of a packed batch to that of its rows); TRL's
padding-free collator would join the batch's packs into one sequence, 8x the attention at 8 packs
(:mod:`mafioso.trainer.packing`).
Both recipes put the loss on the answer only, and TRL's fused LM head scores the answer's tokens in chunks without
building Gemma's 262k-vocabulary logits (on the CPU too: :func:`_score_answers_only`). bench/bench_train.py
measures the two in one run.

Checkpoints go to ``<output>.work/`` so ``--resume`` can pick up an interrupted run; the finished adapter is
written to a temporary folder and renamed into place, so ``<output>`` is either the previous adapter or the
complete new one, never half of each. ``--epoch-snapshots`` also writes the adapter after each earlier epoch,
the same way, to ``<output>.epochs/epoch-N/``: one run then gives a candidate per epoch to evaluate.

Several GPUs (or CPU processes), unchanged, through the standard launchers (DDP; each process holds the base):

    torchrun --nproc_per_node 2 -m mafioso train ...
    accelerate launch --num_processes 2 -m mafioso train ...

Only the main process clears the checkpoint folder and writes the adapter, its card, logs and plot; the others
wait for it. The effective batch is ``batch_size x grad_accum x processes``; a run is resumed only with the
process count it was started with.
"""

from __future__ import annotations

import dataclasses
import errno
import importlib.util
import json
import logging
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from mafioso.core.base_model import BASES, load_model, load_tokenizer, model_facts, named_base, resolve_base
from mafioso.core.config import EAGER_TRAINING, TrainConfig
from mafioso.core.files import sha256_file
from mafioso.trainer.dataset import Sample, duplicate_problems, load_samples, split, tokenize
from mafioso.trainer.model_card import write_loss_plot, write_model_card
from mafioso.core.errors import ConfigError, DatasetError, TrainingDiverged

log = logging.getLogger(__name__)

RUN_FILE = "mafioso-run.json"  # in the checkpoint folder: the process count a resumed run must keep


def work_dir(output: Path) -> Path:
    """Where checkpoints of a run that writes ``output`` are kept until it finishes."""
    return output.with_name(output.name + ".work")


def snapshots_dir(output: Path) -> Path:
    """Where ``--epoch-snapshots`` keeps the adapter after each earlier epoch of a run that writes ``output``."""
    return output.with_name(output.name + ".epochs")


def load_splits(cfg: TrainConfig) -> tuple[list[Sample], list[Sample]]:
    """Training and validation samples: the validation files, or a seeded split of the data."""
    samples = load_samples(cfg.data)
    if not cfg.validation:
        return split(samples, cfg.validation_fraction, cfg.seed)
    validation = load_samples(cfg.validation)
    leaks = duplicate_problems(validation, against=samples)
    if leaks:
        raise DatasetError(["validation repeats training code:"] + leaks)
    return samples, validation


def _device_settings(cfg: TrainConfig, cuda: bool) -> tuple[dict, object]:
    """The trainer's device arguments and the compute dtype: bf16 on CUDA, fp32 on a CPU."""
    import torch

    if cfg.liger_kernel and not cuda:
        raise ConfigError("--liger-kernel needs a CUDA GPU (Liger's kernels are Triton kernels)")
    if cfg.liger_kernel and importlib.util.find_spec("liger_kernel") is None:
        raise ConfigError("--liger-kernel needs the liger-kernel package: pip install 'mafioso[liger]'")
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        log.info("CUDA found: %s base, bf16 compute, %s, %s attention%s%s", "NF4" if cfg.quantization == "nf4" else
                 "bf16", cfg.optim, cfg.attn_implementation, ", packed rows" if cfg.packing else "",
                 ", Liger kernels" if cfg.liger_kernel else "")
        return {"bf16": True, "tf32": True, "optim": cfg.optim, "use_liger_kernel": cfg.liger_kernel}, torch.bfloat16
    log.warning("no CUDA GPU: training on the CPU (fp32 compute, adamw_torch, no mixed precision); expect minutes "
                "for the tiny test model and about an hour per epoch of the shipped data for the real one")
    return {"use_cpu": True, "optim": "adamw_torch"}, torch.float32


def training_attention(requested: str, base: str) -> str:
    """The attention kernel a run trains with: the one asked for, or for ``auto`` sdpa, and eager for the
    architectures of :data:`EAGER_TRAINING` (the base's architecture as its adapter's card names it)."""
    if requested != "auto":
        return requested
    from transformers import AutoConfig

    return "eager" if model_facts(AutoConfig.from_pretrained(base))["architecture"] in EAGER_TRAINING else "sdpa"


def _score_answers_only() -> None:
    """Let TRL's chunked LM head score only the positions that carry a label on the CPU too.

    SFTTrainer's loss projects the hidden states through the LM head in chunks (``add_fused_lm_head``). On Triton
    devices it takes only the positions with a label; elsewhere every position, because a varying count would
    recompile the graphs of a device such as Neuron. A CPU runs eagerly and compiles nothing, and most positions of
    a row are its prompt (the loss is on the answer, about a quarter of the shipped rows' tokens): scoring only the
    answer's trains Gemma 3 270M, whose LM head is 262,144 rows, 2.2x faster on 2 cores (docs/BENCHMARKS.md). The
    loss and its gradients are the same (tests/trainer/test_cpu_training.py). TRL decides it by
    ``trl.trainer.utils._use_triton``, a private name: where a TRL release has none, this does nothing and the test
    fails."""
    from trl.trainer import utils

    decide = getattr(utils, "_use_triton", None)
    if decide is None or getattr(decide, "cpu_too", False):
        return

    def compact(device) -> bool:
        return device.type == "cpu" or decide(device)

    compact.cpu_too = True
    utils._use_triton = compact


def _last_checkpoint(folder: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(folder)) if folder.is_dir() else None


@dataclass
class Run:
    """A training run, set up and ready: the TRL trainer plus what the model card needs."""

    cfg: TrainConfig
    trainer: object
    cuda: bool
    counts: dict
    train_tokens: int
    checkpoint: str | None
    base: dict  # what mafioso.json records of the base: its name and the facts an adapter depends on
    state: object  # accelerate's PartialState: this process's rank, the process count, the barrier


def setup(cfg: TrainConfig) -> Run:
    """Data, tokenizer, 4-bit base, LoRA and the TRL trainer; resumes from the last checkpoint if asked."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from accelerate import PartialState
    from trl import SFTConfig, SFTTrainer

    state = PartialState()  # one process, or one of a torchrun / accelerate launch group (joins it here)
    work = work_dir(Path(cfg.output))
    checkpoint = _last_checkpoint(work) if cfg.resume else None
    if checkpoint is not None:
        _check_process_count(work, state.num_processes)
    if state.is_main_process:
        if cfg.resume and checkpoint is None:
            log.warning("--resume: no checkpoint in %s, starting from scratch", work)
        elif not cfg.resume and work.exists():
            log.info("removing the checkpoints of an earlier run in %s (use --resume to continue it)", work)
            shutil.rmtree(work)
        if not cfg.resume and (snapshots := snapshots_dir(Path(cfg.output))).exists():
            log.info("removing the epoch snapshots of an earlier run in %s", snapshots)
            shutil.rmtree(snapshots)
        if checkpoint is None:
            work.mkdir(parents=True, exist_ok=True)
            (work / RUN_FILE).write_text(json.dumps({"processes": state.num_processes}))
    state.wait_for_everyone()  # no process starts before the folder is cleared

    train_samples, val_samples = load_splits(cfg)
    base = resolve_base(cfg.base_model)
    cfg = dataclasses.replace(cfg, attn_implementation=training_attention(cfg.attn_implementation, base))
    tokenizer = load_tokenizer(base)
    train_rows, cut = tokenize(train_samples, tokenizer, cfg.max_length, cfg.persona, cfg.prompt_format)
    val_rows, val_cut = tokenize(val_samples, tokenizer, cfg.max_length, cfg.persona, cfg.prompt_format)
    for warning in cut + val_cut:
        log.warning(warning)
    if not train_rows:
        raise ConfigError(f"no training row fits in max_length={cfg.max_length} tokens with its answer; "
                          "raise --max-length")
    log.info("%d training and %d validation samples", len(train_rows), len(val_rows))

    cuda = torch.cuda.is_available()
    device_args, compute_dtype = _device_settings(cfg, cuda)
    if not cuda:
        _score_answers_only()
    # each process on its own GPU (LOCAL_RANK under a launcher)
    model = load_model(base, cfg.quantization, f"cuda:{state.local_process_index}" if cuda else "cpu",
                       compute_dtype, cfg.attn_implementation)
    model.config.use_cache = False
    if not cuda:
        # bitsandbytes repacks a 4-bit weight for its CPU inference kernel at the first eval and keeps it packed;
        # back in training that kernel adds a layer's bias in place, which autograd refuses (Qwen2's q/k/v have
        # biases, Gemma's none): keep the training kernel throughout
        for module in model.modules():
            if hasattr(module, "support_avx512bf16_for_cpu"):
                module.support_avx512bf16_for_cpu = False
    # a named base is recorded by name (also when given as its converted folder or GGUF), so the adapter works
    # on any machine that can prepare it; the facts let the worker refuse it on another model
    base_info = {"name": named_base(cfg.base_model) or named_base(base) or cfg.base_model,
                 **model_facts(model.config)}
    if cfg.quantization != "none":
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=cfg.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    lora = LoraConfig(
        r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
        target_modules=cfg.target_modules, bias="none", task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)

    args = SFTConfig(
        output_dir=str(work),
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.eval_batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup,
        max_grad_norm=cfg.max_grad_norm,
        weight_decay=cfg.weight_decay,
        gradient_checkpointing=cfg.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
        max_steps=cfg.max_steps or -1,
        max_length=cfg.max_length,
        # best-fit packing keeps every row whole (rows are already cut to max_length); TRL then feeds padding-free
        # batches. Evaluation stays unpacked, in batches of eval_batch_size rows, so every recipe's eval loss is
        # the same sum over the same batches
        packing=cfg.packing,
        packing_strategy="bfd",
        eval_packing=False,
        completion_only_loss=True,
        eval_strategy="epoch",
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=2,
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        report_to="none",
        seed=cfg.seed,
        data_seed=cfg.seed,
        **device_args,
    )
    trainer = SFTTrainer(
        model=model, args=args, processing_class=tokenizer,
        train_dataset=Dataset.from_list(train_rows), eval_dataset=Dataset.from_list(val_rows),
    )
    if trainer.padding_free:  # each pack a row of the batch, not the batch one sequence (trainer/packing.py)
        from mafioso.trainer.packing import PackRows

        trainer.data_collator = PackRows(trainer.data_collator.pad_token_id)
    return Run(cfg, trainer, cuda, {"train": len(train_rows), "validation": len(val_rows)},
               sum(len(r["input_ids"]) for r in train_rows), checkpoint, base_info, state)


def _check_process_count(work: Path, processes: int) -> None:
    """Refuse to resume a checkpoint made by another number of processes: its step count, data order and
    optimizer state belong to that effective batch."""
    recorded = work / RUN_FILE
    made_by = json.loads(recorded.read_text())["processes"] if recorded.is_file() else 1
    if made_by != processes:
        raise ConfigError(f"the checkpoints in {work} were made by {made_by} process(es) and this run has "
                          f"{processes}: resume with the same count (torchrun --nproc_per_node {made_by}), or "
                          "start over without --resume")


def _cast_weights(path: Path, dtype: str) -> None:
    """Rewrite a safetensors file with its floating-point tensors in ``dtype``."""
    import torch
    from safetensors.torch import load_file, save_file

    target = getattr(torch, dtype)
    tensors = {k: v.to(target) if v.is_floating_point() else v for k, v in load_file(path).items()}
    save_file(tensors, path, metadata={"format": "pt"})


def save(run: Run, stats: dict, command: list[str], output: Path | None = None) -> Path:
    """Write adapter, logs, plot and model card to a temp folder, then rename it into ``output`` (default:
    ``cfg.output``)."""
    cfg, output = run.cfg, Path(output or run.cfg.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-", dir=output.parent))
    tmp.chmod(0o755)
    try:
        run.trainer.model.save_pretrained(tmp)
        if cfg.adapter_dtype != "float32":
            _cast_weights(tmp / "adapter_model.safetensors", cfg.adapter_dtype)
        history = run.trainer.state.log_history
        if _packs_as_rows(run):  # TRL's num_tokens would undercount
            history = [{key: value for key, value in entry.items() if key != "num_tokens"} for entry in history]
        (tmp / "training_log.json").write_text(json.dumps({"stats": stats, "log_history": history}, indent=2))
        write_loss_plot(history, tmp / "loss.png")
        files = {p: sha256_file(Path(p)) for p in [*cfg.data, *cfg.validation]}
        known = BASES.get(run.base["name"])
        write_model_card(tmp, cfg=dataclasses.asdict(cfg), base=run.base, data_files=files,
                         stats=stats, command=command, counts=run.counts, licence=known.licence if known else "",
                         prompt_format=cfg.prompt_format)
        if output.exists():
            old = output.with_name(f".{output.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            output.rename(old)
            tmp.rename(output)
            shutil.rmtree(old)
        else:
            tmp.rename(output)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            kept = f"the adapter already in {output} is intact" if output.exists() else "nothing was written"
            raise ConfigError(f"no space left on the device while writing the adapter to {output}; {kept}. "
                              "Free some space and run the command again.") from None
        raise
    return output


def _device_name(run: Run) -> str:
    import torch

    return torch.cuda.get_device_name() if run.cuda else "cpu"


def _mean_loss(state) -> float | None:
    """The mean of the training losses logged so far (a resumed run's earlier sessions included)."""
    losses = [entry["loss"] for entry in state.log_history if "loss" in entry]
    return sum(losses) / len(losses) if losses else None


def epoch_snapshots(run: Run, command: list[str]):
    """A trainer callback that saves the adapter after each whole epoch before the last (:func:`save`, into
    :func:`snapshots_dir`), from the main process, with that epoch's eval loss on its card."""
    from transformers import TrainerCallback

    class EpochSnapshots(TrainerCallback):
        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            epoch = round(state.epoch or 0)
            if not state.is_world_process_zero or abs(state.epoch - epoch) > 1e-6 or not 0 < epoch < run.cfg.epochs:
                return
            folder = snapshots_dir(Path(run.cfg.output)) / f"epoch-{epoch}"
            if folder.exists():  # the epoch's eval ran again (a resumed run): its snapshot is written
                return
            stats = {"epoch": epoch, "optimizer_steps": state.global_step, "train_loss": _mean_loss(state),
                     "eval_loss": (metrics or {}).get("eval_loss"), "device": _device_name(run)}
            save(run, stats, command, output=folder)
            log.info("epoch %d: adapter snapshot written to %s", epoch, folder)

    return EpochSnapshots()


def divergence_guard(run: Run):
    """A trainer callback that stops the run at the first logged gradient norm or loss, or eval loss, that is
    NaN or infinite. One such optimizer step makes every LoRA weight NaN (the clipped gradient is NaN too), and
    the run would otherwise train on for hours and write an adapter that answers nothing. The error leaves the
    adapter folder as it was; epoch snapshots from before stay valid."""
    import math

    from transformers import TrainerCallback

    def check(state, logs: dict, keys: tuple[str, ...]) -> None:
        bad = [key for key in keys if logs.get(key) is not None and not math.isfinite(float(logs[key]))]
        if bad:
            raise TrainingDiverged(
                f"training diverged at step {state.global_step} of {state.max_steps} (epoch {state.epoch:.2f}): "
                f"{', '.join(f'{key} is {logs[key]}' for key in bad)}. Nothing was written to {run.cfg.output}. "
                f"Run again with a lower --learning-rate (this run: {run.cfg.learning_rate:g}), or another --seed"
                + (", or --attn-implementation eager (sdpa on packed bf16 rows went NaN on Qwen2)."
                   if run.cfg.attn_implementation == "sdpa" and run.cfg.packing else "."))

    class DivergenceGuard(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            check(state, logs or {}, ("grad_norm", "loss"))

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            check(state, metrics or {}, ("eval_loss",))

    return DivergenceGuard()


def training_seconds(state, runtime_s: float, since_step: int = 0) -> float:
    """The trainer's ``train_runtime`` less the evaluations it ran inside it (one at each epoch's end, ~4 s each
    for the shipped validation rows on a GPU: a fifth of a short fast run), counted from ``since_step`` on (a
    resumed run's earlier evaluations are in its history, not in this session's runtime)."""
    evaluating = sum(entry["eval_runtime"] for entry in state.log_history
                     if "eval_runtime" in entry and entry.get("step", 0) > since_step)
    return max(runtime_s - evaluating, 1e-9)


def _packs_as_rows(run: Run) -> bool:
    """Whether each pack is a row of the batch (trainer/packing.py): TRL tallies a step's tokens (its logged
    ``num_tokens``, ``_total_train_tokens``) from the width of ``position_ids``, one row of such a batch."""
    from mafioso.trainer.packing import PackRows

    return isinstance(run.trainer.data_collator, PackRows)


def tokens_trained(run: Run) -> float:
    """The training rows' tokens the run fed the model: every row once per epoch. A run cut by ``max_steps``
    counts what TRL tallied (the tokens that are not padding, over all processes), except where packs are rows
    (:func:`_packs_as_rows`, whose batches TRL undercounts): there the share of the epochs the steps covered
    counts (packs are near ``max_length`` alike)."""
    if not run.cfg.max_steps:
        return run.train_tokens * run.cfg.epochs
    if _packs_as_rows(run):
        return round(run.train_tokens * run.trainer.state.epoch)
    return run.trainer._total_train_tokens


def checkpoint_step(checkpoint: str | None) -> int:
    """The optimizer step a ``checkpoint-N`` folder was saved at (0: no checkpoint)."""
    return int(Path(checkpoint).name.rsplit("-", 1)[-1]) if checkpoint else 0


def resumed_statistics(state, done: int, tokens: float, training_s: float) -> dict:
    """Figures of a resumed run that cover the whole run, not only its last session: the trainer's own
    ``training_loss`` and speed count just the steps after the checkpoint at step ``done`` (``training_s``: this
    session's)."""
    return {
        "train_loss": _mean_loss(state),
        "train_tokens_per_s": round(tokens * (1 - done / state.max_steps) / training_s, 1),
        "resumed_from_step": done,
    }


def train(cfg: TrainConfig, command: list[str] | None = None) -> Path:
    """Run the recipe (setup → train → save) and return the adapter folder."""
    import torch

    started = time.time()
    run = setup(cfg)
    command = [arg for arg in command or sys.argv if arg != "--resume"]
    run.trainer.add_callback(divergence_guard(run))
    if cfg.epoch_snapshots:
        run.trainer.add_callback(epoch_snapshots(run, command))
    if run.cuda:
        torch.cuda.reset_peak_memory_stats()
    result = run.trainer.train(resume_from_checkpoint=run.checkpoint)
    runtime_s = result.metrics["train_runtime"]
    resumed_at = checkpoint_step(run.checkpoint)
    # read before the final evaluation, which is not inside the runtime
    training_s = training_seconds(run.trainer.state, runtime_s, resumed_at)
    final_eval = run.trainer.evaluate()
    processes = run.state.num_processes
    trained = tokens_trained(run)
    stats = {
        "processes": processes,
        "per_device_batch": cfg.batch_size,
        "grad_accum": cfg.grad_accum,
        "effective_batch": cfg.batch_size * cfg.grad_accum * processes,
        "optimizer_steps": run.trainer.state.global_step,
        "train_loss": result.training_loss,
        "eval_loss": final_eval.get("eval_loss"),
        "train_runtime_s": round(time.time() - started, 1),
        "train_tokens": trained,
        "train_tokens_per_s": round(trained / training_s, 1),  # epoch-end evaluations left out
        "epoch_eval_s": round(runtime_s - training_s, 1),
        "peak_gpu_memory_gb": round(torch.cuda.max_memory_allocated() / 1e9, 3) if run.cuda else None,
        "device": _device_name(run),
    }
    if run.checkpoint:
        stats.update(resumed_statistics(run.trainer.state, resumed_at, stats["train_tokens"], training_s))
    output = Path(cfg.output)
    if run.state.is_main_process:  # one writer; the others wait, so none returns before the adapter exists
        save(run, stats, command)
        shutil.rmtree(work_dir(output), ignore_errors=True)
    run.state.wait_for_everyone()
    log.info("adapter written to %s (train loss %.4f, eval loss %s)", output, stats["train_loss"],
             stats["eval_loss"])
    return output
