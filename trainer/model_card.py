"""What a trained adapter carries besides its weights: a model card, ``mafioso.json`` and a loss plot."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from mafioso.core.config import ADAPTER_INFO
from mafioso.prompts import DEFAULT_PERSONA, PROMPT_FORMAT
from mafioso.prompts import persona as find_persona


#: The scores a card shows, in order, with the direction that is better and what they measure.
CARD_METRICS = (
    ("grounded", "↑", "served answers with no claim the code contradicts (invented names, constructs it "
                      "lacks or has but denies, its names in roles it never gives them, printed values it does not print)"),
    ("grounded_model", "↑", "the same, for the model's answers before the claim post-check drops such sentences"),
    ("identifier_recall", "↑", "the code's own names the answer mentions"),
    ("persona_rate", "↑", "answers in the persona's voice (its markers)"),
    ("stop_rate", "↑", "answers that end on their own"),
    ("loop_rate", "↓", "answers that looped"),
    ("code_leak_rate", "↓", "answers that turned into code"),
    ("loss", "↓", "validation loss on the response tokens"),
)


def portable(value):
    """``value`` without the training machine's paths: an absolute path becomes its file name (the card and
    ``mafioso.json`` travel with the adapter; ``/tmp/runs/...`` means nothing elsewhere)."""
    if isinstance(value, str) and value.startswith("/"):
        return Path(value).name
    if isinstance(value, list):
        return [portable(v) for v in value]
    return value


#: What each shipped persona's voice caricatures, for the card's risks (a new persona gets a generic line).
_CARICATURE = {
    "mafioso": "The voice is a Hollywood caricature of Italian-American gangsters (The Godfather, Goodfellas, "
               "Casino): a\n  stereotype played for laughs.",
    "noir": "The voice is a pastiche of 1940s film-noir detectives (The Maltese Falcon, The Big Sleep): hard-boiled\n"
            "  clichés played for laughs.",
}


def _run_figures(stats: dict, resumed: str) -> str:
    """The device and the run's figures that were recorded (an epoch snapshot has no wall time of its own)."""
    parts = [str(stats.get("device"))]
    if stats.get("train_runtime_s") is not None:
        parts.append(f"wall time {stats['train_runtime_s']} s{resumed}")
    if stats.get("train_tokens_per_s") is not None:
        parts.append(f"{stats['train_tokens_per_s']} tokens/s")
    if stats.get("peak_gpu_memory_gb") is not None:
        parts.append(f"peak GPU memory {stats['peak_gpu_memory_gb']} GB")
    return "; ".join(parts)


def write_model_card(folder: Path, *, cfg: dict, base: dict, data_files: dict, stats: dict,
                     command: list[str], counts: dict, evaluation: dict | None = None,
                     licence: str = "", prompt_format: int = PROMPT_FORMAT) -> None:
    """Write ``README.md`` (for people) and ``mafioso.json`` (for the worker) into ``folder``.

    ``base`` is ``{"name": ..., "architecture": ..., "hidden_size": ..., "num_hidden_layers": ...}``: the worker
    loads ``base_model`` (the name) by default and refuses the adapter on a model with other facts.
    ``evaluation`` is ``mafioso eval``'s metrics.json of this adapter (``adapter``, ``base``, ``reference``);
    without one the card says how to make it. ``prompt_format`` is the :data:`mafioso.prompts.PROMPT_FORMAT` it
    was trained on. Machine paths never reach either file.
    """
    cfg = {k: portable(v) for k, v in cfg.items()}
    command = [portable(part) for part in command]
    data_files = {portable(path): digest for path, digest in data_files.items()}
    info = {"base_model": base["name"], "base": base, "prompt_format": prompt_format, "data_files": data_files,
            "counts": counts, "stats": stats, "config": cfg, "command": shlex.join(command)}
    (folder / ADAPTER_INFO).write_text(json.dumps(info, indent=2) + "\n")
    (folder / "README.md").write_text(card_text(info, evaluation, licence))


def card_text(info: dict, evaluation: dict | None, licence: str) -> str:
    """The model card, in the sections of a Hugging Face model card, from ``mafioso.json``'s ``info``."""
    base, cfg, stats, counts = info["base"], info["config"], info["stats"], info["counts"]
    name = portable(base["name"])  # a local folder base: its name, not the training machine's path
    facts = f"{base['architecture']}, hidden size {base['hidden_size']}, {base['num_hidden_layers']} layers"
    loss = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    resumed = (f" (the last session: resumed from the checkpoint at step {stats['resumed_from_step']})"
               if stats.get("resumed_from_step") else "")
    snapshot = (f"- Snapshot: this is the adapter after epoch {stats['epoch']} of {cfg.get('epochs'):g} "
                f"({stats.get('optimizer_steps')} optimizer steps), kept by `--epoch-snapshots`\n"
                if stats.get("epoch") else "")
    hyper = "\n".join(f"| `{k}` | `{v}` |" for k, v in cfg.items() if k not in ("data", "validation"))
    persona = cfg.get("persona") or DEFAULT_PERSONA
    voice = find_persona(persona).title
    caricature = _CARICATURE.get(persona, f"The voice is a {voice}, a stock character played for laughs.")
    data = "\n".join(f"| `{path}` | `{digest}` |" for path, digest in info["data_files"].items())
    return f"""---
base_model: {name}
library_name: peft
license: {"other" if "Gemma" in licence else "apache-2.0" if licence else "unknown"}
tags: [lora, code-explanation, python, {", ".join(dict.fromkeys(("mafioso", persona)))}]
---

# Mafioso LoRA adapter for `{name}`

A LoRA adapter that makes `{name}` ({facts}) explain Python code in the voice of a {voice}:
funny first in tone, accurate first in content. Part of Mafioso (Discord, Slack, console and an
OpenAI-compatible HTTP worker).

## Model details
- Base model: `{name}`; adapter type LoRA (PEFT), rank {cfg.get('lora_r')}, alpha {cfg.get('lora_alpha')},
  on {", ".join(cfg.get('target_modules') or [])}.
- Licence: {licence or "see the base model's licence"}. The adapter is a derivative of the base: whoever
  redistributes the two together is bound by the base's terms (see the project's NOTICE).
- Prompt: the project's one format (`prompts/`: instruction, request, code and a facts sheet read from the
  code's syntax tree), version {info.get("prompt_format", 1)}; the adapter only answers well inside it, and the
  worker serves it in that version.

## Intended use
Explaining short Python snippets pasted in a chat (a function, a class, a script, a traceback with its code,
"is there a bug?"), in character, for people learning or reviewing code for fun. Served by `mafioso worker`
or `mafioso explain --adapter <this folder>`; greedy decoding.

## Out of scope
Code review you rely on, security audits, other programming languages (it should say the input is not
Python), long programs (it outlines them), anything that needs the code to be run: it never runs user code
and cannot know a program's exact output.

## Limitations, bias and risks
- **Accuracy on unseen code is the weak point**: small models state things the code contradicts. The
  `grounded` score below is the share of answers with no such claim found by an automatic check; the check
  cannot see every kind of mistake, so read answers as a funny first opinion, not as documentation.
- {caricature} It teases the programmer; it is told never to insult people for who they are,
  but it is a small model and can misfire. Do not deploy it where that tone is unwelcome.
- Instructions hidden in the code (prompt injection) are explained and mocked in the training data, not
  obeyed; a determined attacker may still steer a small model.

## Evaluation
{_evaluation_section(evaluation)}

## Training
- Command: `{info['command']}`
- Samples: {counts['train']} training, {counts['validation']} validation (the project's `data/`, written for
  Mafioso; every stated output checked by running the snippet)
{snapshot}- Final losses: train {loss(stats.get('train_loss'))}, validation {loss(stats.get('eval_loss'))}
- Device: {_run_figures(stats, resumed)}

### Data
| file | sha256 |
|---|---|
{data}

### Hyper-parameters
| setting | value |
|---|---|
{hyper}
"""


def _evaluation_section(evaluation: dict | None) -> str:
    if not evaluation:
        return ("Not evaluated yet: `mafioso eval --data data/validation.json --adapter <this folder> "
                "--compare-base --out eval` writes the scores; the trainer's card cannot know them.")
    columns = [c for c in ("adapter", "base", "reference") if evaluation.get(c)]
    header = "| metric | better | " + " | ".join(columns) + " | what it measures |"
    rows = []
    for key, better, meaning in CARD_METRICS:
        cells = [evaluation[c].get(key) for c in columns]
        if all(v is None for v in cells):
            continue
        shown = ["–" if v is None else f"{v:.3f}" for v in cells]
        rows.append(f"| {key} | {better} | " + " | ".join(shown) + f" | {meaning} |")
    n = evaluation.get("samples", "?")
    return (f"`mafioso eval` on the validation split ({n} samples, never seen in training); `base` is the bare base "
            "model with the same prompt, `reference` the dataset's own answers.\n\n"
            + "\n".join([header, "|---" * (len(columns) + 3) + "|", *rows]))


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
