"""Wiring for the worker commands: settings (defaults → env / ``.env`` → flags) and the worker itself."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable

from mafioso.core.config import (DEFAULT_MODEL_NAME, WORKER_APIS, GenerationConfig, WorkerConfig, add_arguments,
                                 build, from_env,
                            load_dotenv_file)

__all__ = ["ENV_PREFIX", "add_remote_arguments", "add_settings_arguments", "build_worker", "load_settings"]

ENV_PREFIX = "MAFIOSO_"


def add_settings_arguments(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """One flag per WorkerConfig and GenerationConfig field (except ``skip``); unset flags keep env values."""
    add_arguments(parser, WorkerConfig, skip=skip)
    add_arguments(parser, GenerationConfig, skip=skip)


def add_remote_arguments(parser: argparse.ArgumentParser) -> None:
    """``--worker-api`` and ``--worker-model``: how ``serve`` / ``explain`` talk to the server at --worker-url."""
    parser.add_argument("--worker-api", dest="worker_api", choices=WORKER_APIS, default=argparse.SUPPRESS,
                        help="what the server at --worker-url speaks: mafioso (a `mafioso worker`) or openai "
                             "(vLLM / SGLang; the prompt is rendered here) (MAFIOSO_WORKER_API, default mafioso)")
    parser.add_argument("--worker-model", dest="worker_model", default=argparse.SUPPRESS,
                        help="with --worker-api openai: the model name to ask for, e.g. the LoRA module's name "
                             "(MAFIOSO_WORKER_MODEL, default mafioso)")


def _settings(cls: type, args: argparse.Namespace):
    names = {f.name for f in dataclasses.fields(cls)}
    flags = {k: v for k, v in vars(args).items() if k in names}
    env = dataclasses.asdict(from_env(cls, ENV_PREFIX))
    return build(cls, env, flags, where="flags")


def load_settings(args: argparse.Namespace) -> tuple[WorkerConfig, GenerationConfig]:
    """The worker and generation settings: defaults, then ``.env`` / ``MAFIOSO_*``, then the flags."""
    load_dotenv_file()
    return _settings(WorkerConfig, args), _settings(GenerationConfig, args)


def build_worker(cfg: WorkerConfig, gen: GenerationConfig, feedback=None,
                 note: Callable[[str], None] | None = None):
    """Load the engine (``cfg.engine``: torch, or llama.cpp on a GGUF; minutes on first use of the embedded model)
    and wrap it in a Worker that records its answers in ``feedback`` (a
    :class:`mafioso.core.feedback.FeedbackStore`, or None); ``note`` hears a line on what the load does (by
    default it is logged)."""
    from mafioso.worker.service import Worker

    if cfg.engine == "llamacpp":
        from mafioso.worker.llamacpp_engine import LlamaCppEngine as engine
    else:
        from mafioso.worker.engine import Engine as engine
    return Worker(engine.load(cfg, gen, **({"note": note} if note else {})), cfg, feedback=feedback)


def build_workers(cfg: WorkerConfig, gen: GenerationConfig, feedback=None,
                  note: Callable[[str], None] | None = None) -> dict:
    """{model name: Worker}: the worker's own adapter as ``mafioso``, then one per MAFIOSO_ADAPTERS entry (a merged
    copy of the base each, sharing only the process and the feedback store), each in its adapter's persona."""
    workers = {DEFAULT_MODEL_NAME: build_worker(cfg, gen, feedback, note)}
    for name, spec in cfg.more_adapters().items():
        workers[name] = build_worker(dataclasses.replace(cfg, adapter=spec, adapters=""), gen, feedback, note)
    return workers
