"""Helpers of the worker tests: a fake engine (the boundary), test settings and a loopback server."""

from __future__ import annotations

import contextlib
import threading
import time

from bot.engine import Generation
from mafioso.config import WorkerConfig


class FakeEngine:
    """Stands in for :class:`bot.engine.Engine`: records every batch, answers "explained <code>".

    ``gate`` (when set) holds each batch until the test opens it; ``delay`` sleeps in the GPU thread;
    ``fail`` makes ``generate`` raise.
    """

    def __init__(self, delay: float = 0.0, gate: threading.Event | None = None, fail: bool = False):
        self.delay = delay
        self.gate = gate
        self.fail = fail
        self.batches: list[list[tuple[str, str | None]]] = []
        self.started = threading.Event()

    def generate(self, requests):
        self.batches.append(list(requests))
        self.started.set()
        if self.gate is not None:
            self.gate.wait(timeout=10)
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("CUDA out of memory (fake)")
        return [Generation(text=f"explained {code}", tokens=3, finished=True) for code, _ in requests]

    def seen(self) -> list[str]:
        """Every code the engine was asked to explain."""
        return [code for batch in self.batches for code, _ in batch]


def worker_config(**overrides) -> WorkerConfig:
    """A WorkerConfig for tests: small queue and batch limits unless overridden."""
    values = {"adapter": "none", "device": "cpu", "max_batch_size": 16, "queue_size": 64,
              "request_timeout": 30.0}
    values.update(overrides)
    return WorkerConfig(**values)


@contextlib.asynccontextmanager
async def serving(worker, cfg: WorkerConfig):
    """Run the real aiohttp app on a free loopback port; yields its base URL. Starts and stops the worker."""
    from aiohttp import web

    from bot.http_api import make_app

    runner = web.AppRunner(make_app(worker, cfg))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()
