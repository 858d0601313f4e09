"""Wiring for the worker commands: the workers themselves, from settings loaded by mafioso.core.settings."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from mafioso.core.config import DEFAULT_MODEL_NAME, GenerationConfig, WorkerConfig

__all__ = ["build_worker", "build_workers"]


def build_worker(cfg: WorkerConfig, gen: GenerationConfig, feedback=None,
                 note: Callable[[str], None] | None = None):
    """Load the engine (minutes on first use of the embedded model) and wrap it in a Worker that records its
    answers in ``feedback`` (a :class:`mafioso.core.feedback.FeedbackStore`, or None); ``note`` hears a line on what the
    load does (by default it is logged)."""
    from mafioso.worker.engines import load_engine
    from mafioso.worker.service import Worker

    return Worker(load_engine(cfg, gen, **({"note": note} if note else {})), cfg, feedback=feedback)


def build_workers(cfg: WorkerConfig, gen: GenerationConfig, feedback=None,
                  note: Callable[[str], None] | None = None) -> dict:
    """{model name: Worker}: the worker's own adapter as ``mafioso``, then one per MAFIOSO_ADAPTERS entry (a merged
    copy of the base each, sharing only the process and the feedback store), each in its adapter's persona."""
    workers = {DEFAULT_MODEL_NAME: build_worker(cfg, gen, feedback, note)}
    for name, spec in cfg.more_adapters().items():
        workers[name] = build_worker(dataclasses.replace(cfg, adapter=spec, adapters=""), gen, feedback, note)
    return workers
