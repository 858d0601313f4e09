"""What a trained adapter carries besides its weights: a model card, ``mafioso.json`` and a loss plot."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from mafioso.config import ADAPTER_INFO


def write_model_card(folder: Path, *, cfg: dict, base: dict, data_files: dict, stats: dict,
                     command: list[str], counts: dict) -> None:
    """Write ``README.md`` (for people) and ``mafioso.json`` (for the worker) into ``folder``.

    ``base`` is ``{"name": ..., "architecture": ..., "hidden_size": ..., "num_hidden_layers": ...}``: the worker
    loads ``base_model`` (the name) by default and refuses the adapter on a model with other facts.
    """
    info = {"base_model": base["name"], "base": base, "data_files": data_files, "counts": counts,
            "stats": stats, "config": cfg, "command": shlex.join(command)}
    facts = f"{base['architecture']}, hidden size {base['hidden_size']}, {base['num_hidden_layers']} layers"
    base = base["name"]
    (folder / ADAPTER_INFO).write_text(json.dumps(info, indent=2) + "\n")
    hyper = "\n".join(f"| `{k}` | `{v}` |" for k, v in cfg.items() if k not in ("data", "validation"))
    data = "\n".join(f"| `{path}` | `{digest}` |" for path, digest in data_files.items())
    loss = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    resumed = (f" (the last session: resumed from the checkpoint at step {stats['resumed_from_step']})"
               if stats.get("resumed_from_step") else "")
    (folder / "README.md").write_text(f"""# Mafioso LoRA adapter

A LoRA adapter that makes `{base}` ({facts}) explain Python code in the voice of a Hollywood mafioso.
Load it with `mafioso explain --adapter {cfg['output']}` (or any PEFT-aware tool, on the same base).

## Training
- Command: `{shlex.join(command)}`
- Samples: {counts['train']} training, {counts['validation']} validation
- Final losses: train {loss(stats.get('train_loss'))}, validation {loss(stats.get('eval_loss'))}
- Device: {stats.get('device')}; wall time {stats.get('train_runtime_s')} s{resumed};
  {stats.get('train_tokens_per_s')} tokens/s; peak GPU memory {stats.get('peak_gpu_memory_gb')} GB

## Data
| file | sha256 |
|---|---|
{data}

## Hyper-parameters
| setting | value |
|---|---|
{hyper}
""")


def write_loss_plot(history: list[dict], path: Path) -> None:
    """Training and validation loss against the optimizer step, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(h["step"], h["loss"]) for h in history if "loss" in h]
    val = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train), label="train")
    if val:
        ax.plot(*zip(*val), marker="o", label="validation")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (response tokens)")
    ax.set_title("Mafioso LoRA training")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
