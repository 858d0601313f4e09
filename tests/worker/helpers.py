"""Worker test helpers: a fake Engine to inject into the real Worker, a test WorkerConfig, and the real worker HTTP
app served on loopback."""

from __future__ import annotations

import contextlib
import threading
import time

from tests.helpers import serve_loopback


def engine_with(engine, gen):
    """A fresh :class:`mafioso.worker.engine.GenerateEngine` on ``engine``'s model, tokenizer, device and persona,
    decoding with ``gen`` (an engine's settings are fixed when it is made)."""
    from mafioso.worker.engine import GenerateEngine

    return GenerateEngine(engine.model, engine.tokenizer, gen, engine.device, engine.persona)


class FakeEngine:
    """Stands in for a :class:`mafioso.worker.engines.Engine`: records every batch, answers "explained <code>" in
    ``tokens`` tokens, decoded one step every ``token_delay`` seconds, honouring each request's Control like the real
    engines (a row stops at its ``max_tokens``, cut as unfinished, or once cancelled; a batch ends when its
    last row does).

    ``gate`` (when set) holds each batch until the test opens it; ``delay`` sleeps in the GPU thread;
    ``fail`` makes ``generate`` raise. ``decoded`` counts the tokens decoded, ``cancelled`` the rows stopped.
    """

    def __init__(self, delay: float = 0.0, gate: threading.Event | None = None, fail: bool = False,
                 tokens: int = 3, token_delay: float = 0.0, max_new_tokens: int = 200):
        from mafioso.core.config import GenerationConfig

        self.delay = delay
        self.gate = gate
        self.fail = fail
        self.tokens = tokens
        self.token_delay = token_delay
        # no loop rule: the fake never loops, and a stream may show all its tokens at once
        self.gen = GenerationConfig(max_new_tokens=max_new_tokens, stop_loops=False)
        self.continuous_slots = 0  # the Engine protocol: whole batches per call, no decode stats
        self.stats = None
        self.max_prompt_tokens = 1 << 30  # the fake's prompts never outgrow a context
        self.batches: list[list[tuple[str, str | None]]] = []
        self.controls: list = []  # every request's Control, in the order the batches came
        self.started = threading.Event()
        self.decoded = 0
        self.cancelled = 0
        self._lock = threading.Lock()  # continuous_slots: several calls at once
        import mafioso.worker.engine  # noqa: F401 - torch loads here, not inside the first (timed) answer

    def prompt_tokens(self, code, request=None):
        """About one token a word, like the tests' prompts."""
        return len(code.split()) + len((request or "").split())

    def close(self):
        """Nothing to release."""

    def generate(self, requests, controls=None):
        from mafioso.worker.control import Control
        from mafioso.worker.engine import Generation

        controls = controls or [Control() for _ in requests]
        self.batches.append(list(requests))
        self.controls += controls
        self.started.set()
        if self.gate is not None:
            self.gate.wait(timeout=10)
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("CUDA out of memory (fake)")
        limits = [min(self.tokens, c.limit(self.gen.max_new_tokens)) for c in controls]
        done = [0] * len(requests)
        stopped = [False] * len(requests)
        for _ in range(max(limits)):
            for row, control in enumerate(controls):
                if not stopped[row] and control.cancelled:
                    stopped[row] = True
                    with self._lock:
                        self.cancelled += 1
            live = [row for row in range(len(requests)) if not stopped[row] and done[row] < limits[row]]
            if not live:
                break
            time.sleep(self.token_delay)
            for row in live:
                done[row] += 1
                controls[row].emit(done[row] - 1)
            with self._lock:
                self.decoded += len(live)
        return [Generation(text=f"explained {code}", tokens=n, finished=n >= self.tokens)
                for (code, _), n in zip(requests, done)]

    def text_so_far(self, code: str, ids: list[int]) -> str:
        """The answer if it ended after ``ids``: the share of "explained <code>" that ``ids`` are of its tokens."""
        text = f"explained {code}"
        return text[:len(text) * min(len(ids), self.tokens) // self.tokens]

    def seen(self) -> list[str]:
        """Every code the engine was asked to explain."""
        return [code for batch in self.batches for code, _ in batch]


def worker_config(**overrides):
    """A WorkerConfig for tests: small queue and batch limits unless overridden."""
    values = {"adapter": "none", "device": "cpu", "max_batch_size": 16, "queue_size": 64,
              "request_timeout": 30.0}
    values.update(overrides)
    from mafioso.core.config import WorkerConfig

    return WorkerConfig(**values)


@contextlib.asynccontextmanager
async def serving(worker, cfg, personas=None):
    """The real worker HTTP app (mafioso.worker.http_api) on a loopback port; yields its base URL. Starts and
    stops the worker (and the workers of ``personas``, more models by name)."""
    from mafioso.worker.http_api import RUNNER_OPTIONS, make_app

    runner, url = await serve_loopback(make_app(worker, cfg, personas=personas), **RUNNER_OPTIONS)
    try:
        yield url
    finally:
        await runner.cleanup()


def recording_compiles(fn):
    """``fn`` (a torch.compile wrapper) wrapped to record what compiling costs while it runs: the graphs dynamo
    compiles, and the source of every size they keep symbolic (e.g. ``L['rows'].size()[0]``, from torch's shape
    log). Returns the wrapper and the record, ``{"graphs": int, "symbolic": [source, ...]}``."""
    import logging

    from torch._dynamo.utils import counters

    record = {"graphs": 0, "symbolic": []}

    class Collect(logging.Handler):
        def emit(self, log_record):
            text = log_record.getMessage()
            if text.startswith("create_symbol "):  # "create_symbol s3 = 2 for L['rows'].size()[0] [2, int_oo] ..."
                record["symbolic"].append(text.split(" for ", 1)[1].split(" [", 1)[0])

    def recording(*args, **kwargs):
        shapes = logging.getLogger("torch.fx.experimental.symbolic_shapes")
        handler, level, graphs = Collect(), shapes.level, counters["stats"]["unique_graphs"]
        shapes.addHandler(handler)
        shapes.setLevel(logging.INFO)
        try:
            return fn(*args, **kwargs)
        finally:
            shapes.removeHandler(handler)
            shapes.setLevel(level)
            record["graphs"] += counters["stats"]["unique_graphs"] - graphs

    return recording, record


def short_then_long_slot(decoder, ids: list[list[int]], n: int) -> list[list[int]]:
    """``n`` greedy tokens for ``ids[0]`` in short slot 0 and ``ids[1]`` in long slot 6, which joins after four
    steps, so that later steps run over both cache parts (how the GPU serves a long prompt beside short ones);
    each step over the key span its rows reach, as the engine asks for it."""
    got = {0: [decoder.prefill(0, ids[0])]}
    reach = {0: len(ids[0]) + n}
    for step in range(n - 1):
        if step == 4:  # a long slot joins: from here every step runs over both parts
            got[6] = [decoder.prefill(6, ids[1])]
            reach[6] = len(ids[1]) + n
        tokens = decoder.step(active=max(got) + 1, reach=max(reach.values())).tolist()
        for slot in got:
            got[slot].append(tokens[slot])
    while len(got[6]) < n:
        got[6].append(decoder.step(active=7, reach=reach[6]).tolist()[6])
    return [got[0][:n], got[6]]
