"""What the worker talks to: the :class:`Engine` protocol, and :func:`load_engine`, which picks the engine.

    engine = load_engine(WorkerConfig(base_model="embedded", adapter="out/adapter"), GenerationConfig())
    [answer] = engine.generate([("print(1 + 1)", None)])

Three engines satisfy the protocol: :class:`mafioso.worker.engine.GenerateEngine` (``model.generate``, every
model and setting), :class:`mafioso.worker.fast_engine.FastEngine` (greedy continuous batching on Gemma 3 and
Qwen2, holding a GenerateEngine for what it cannot serve) and, with ``engine=llamacpp``,
:class:`mafioso.worker.llamacpp_engine.LlamaCppEngine` (an exported GGUF in llama.cpp, holding a GenerateEngine
for the prompt and the rules). The other modules import the plain one's, never the reverse; only this module
chooses between them.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Mapping
from typing import Protocol

from mafioso.core.config import GenerationConfig, WorkerConfig
from mafioso.core.files import cache_dir
from mafioso.worker.control import Control
from mafioso.worker.decoder_settings import DecoderSettings
from mafioso.worker.engine import GenerateEngine, Generation, load_model_for
from mafioso.worker.fast_engine import DecodeStats, FastEngine

__all__ = ["Engine", "load_engine"]

log = logging.getLogger(__name__)


class Engine(Protocol):
    """A loaded model that explains code: what :class:`mafioso.worker.service.Worker` calls."""

    gen: GenerationConfig
    #: Longest prompt (tokens) that still leaves room for a full answer.
    max_prompt_tokens: int
    #: Requests decoded at once, handed over one per call (continuous batching); 0: whole batches per call.
    continuous_slots: int
    #: Decode-step counters for the metrics (None: the engine keeps none).
    stats: DecodeStats | None

    def generate(self, requests: list[tuple[str, str | None]],
                 controls: list[Control] | None = None) -> list[Generation]:
        """Explain a batch of ``(code, request)`` pairs; answers in order."""
        ...

    def prompt_tokens(self, code: str, request: str | None = None) -> int:
        """How many tokens the prompt for ``code`` takes."""
        ...

    def text_so_far(self, code: str, ids: list[int]) -> str:
        """The answer's text if it ended after ``ids`` (its tokens so far): what a stream may show."""
        ...

    def close(self) -> None:
        """Release what the engine runs besides the model."""
        ...


def load_engine(cfg: WorkerConfig, gen: GenerationConfig, note: Callable[[str], None] = log.info,
                persona: str | None = None, tuning: Mapping[str, object] | None = None) -> Engine:
    """Load the model named by ``cfg`` and wrap it in the fastest engine that serves it exactly: the fast
    engine with ``fast_decode`` on a Gemma 3 or Qwen2 model, greedy, unquantized; else the plain ``generate`` one.
    ``note`` hears a line on what the load does; ``persona``: whose voice to prompt in (default: the adapter's);
    ``tuning``: :class:`DecoderSettings` fields to change from what ``cfg`` gives (benches)."""
    if cfg.engine == "llamacpp":  # the exported GGUF in llama.cpp (the llamacpp extra)
        from mafioso.worker.llamacpp_engine import LlamaCppEngine

        return LlamaCppEngine.load(cfg, gen, note, persona)
    loaded = load_model_for(cfg, note)
    model, tokenizer, device = loaded.model, loaded.tokenizer, loaded.device
    persona = persona or loaded.persona
    if cfg.fast_decode:
        if FastEngine.supports(model, gen, loaded.quantization):
            settings = dataclasses.replace(DecoderSettings.of(cfg, gen, device), **(tuning or {}))
            if settings.compile:  # compiled kernels kept with the converted model, not in /tmp: a restarted
                # worker then compiles from the cache (docs/BENCHMARKS.md)
                os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir() / "torchinductor"))
            return FastEngine(model, tokenizer, gen, device, settings, persona, loaded.prompt_format)
        log.info("fast decode path off: it needs quantization=none, a Gemma 3 or Qwen2 model and, on a GPU, "
                 "greedy decoding by default")
    return GenerateEngine(model, tokenizer, gen, device, persona, loaded.prompt_format)
