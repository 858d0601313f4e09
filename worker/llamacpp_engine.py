"""The llama.cpp engine (``--engine llamacpp``, issue 21): answers decoded by llama.cpp from the merged GGUF that
``mafioso export gguf`` writes, behind the same worker API as the torch engines.

    mafioso export gguf --adapter default --out dist/ --type q8_0
    pip install 'mafioso[llamacpp]'          # builds llama.cpp: 15-25 minutes on 2 cores, never in the default
    mafioso worker --engine llamacpp --gguf dist/mafioso-q8_0.gguf

Only the decoding moves to llama.cpp. The prompt is the same token ids (the base's own tokenizer renders and
encodes it, as for the torch engines; llama.cpp never tokenizes), and every rule around the decode is the plain
:class:`mafioso.worker.engine.GenerateEngine`'s, held here, not copied: the answer's own repetition penalty,
n-gram bans and grounded decoding act on llama.cpp's logits at each step (one numpy pass over the vocabulary); it
stops at EOS, at a new ``###`` section and at a loop (``worker/decoding_rules.py``); the answer is cut, decoded and
post-checked (code removed, claims its code contradicts dropped) by the same methods, in the adapter's persona and
prompt format. Greedy answers from the merged F16 GGUF are the torch engine's (docs/BENCHMARKS.md says how
closely); a sampled answer (a request's temperature, or ``do_sample``) is llama.cpp's own draw with the same
temperature, nucleus and seed, in its own order (nucleus, then temperature).

One llama.cpp context, so one answer at a time (``continuous_slots = 1``: the worker hands it one request per
call); a request that shares a prefix with the last one (the instruction every prompt starts with) reuses that
prefix's KV cache. Needs the ``llamacpp`` extra; without it the load is a ConfigError that says how to get it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from types import SimpleNamespace

import numpy as np
import torch

from mafioso.core.base_model import load_tokenizer, resolve_base
from mafioso.core.config import GenerationConfig, WorkerConfig
from mafioso.core.errors import ConfigError, ModelError
from mafioso.worker.control import Control
from mafioso.worker.decoding_rules import AnswerRules
from mafioso.worker.engine import (GenerateEngine, Generation, adapter_folder, adapter_persona, adapter_prompt_format,
                                   base_of)
from mafioso.worker.grounded_decoding import AnswerGrounding
from mafioso.worker.repetition_penalty import penalize_
from mafioso.worker.retry import Resume, answer_with_retries

__all__ = ["INSTALL", "LlamaCppEngine"]

log = logging.getLogger(__name__)

INSTALL = ("--engine llamacpp needs llama-cpp-python: pip install 'mafioso[llamacpp]' (it builds llama.cpp from "
           "source, 15-25 minutes on 2 cores), or use --engine torch")
#: Most tokens one context holds (prompt and answer): Gemma 3 270M's own context is 32k, which llama.cpp would
#: allocate whole; the worker's longest prompt (max_input_chars, facts sheet) fits in far less.
MAX_CONTEXT = 8192


class _ModelFacts:
    """What the plain engine reads of a model when it is made (config, generation config, vocabulary size), for
    an engine whose weights live in llama.cpp: read from the base's folder."""

    def __init__(self, base: str):
        from transformers import AutoConfig
        from transformers import GenerationConfig as HFGenerationConfig

        self.config = AutoConfig.from_pretrained(base)
        try:
            self.generation_config = HFGenerationConfig.from_pretrained(base)
        except OSError:
            self.generation_config = HFGenerationConfig.from_model_config(self.config)
        text = self.config.get_text_config()
        self.vocab_size = text.vocab_size
        self._head = SimpleNamespace(weight=SimpleNamespace(shape=(text.vocab_size, text.hidden_size)))

    def get_output_embeddings(self):
        """The LM head's shape (all the plain engine reads of it)."""
        return self._head


class _AnswerRules:
    """The plain engine's per-step rules for one answer, on llama.cpp's logits (a numpy row per step): the
    answer's own repetition penalty (:mod:`mafioso.worker.repetition_penalty`), n-gram bans (``rules``, which the
    decode loop feeds) and grounded decoding, in that order, as ``GenerateEngine.decode`` stacks them."""

    def __init__(self, gen: GenerationConfig, prompt_ids: list[int], rules: AnswerRules,
                 grounding: AnswerGrounding | None, resume: Resume | None = None):
        self.penalty = gen.repetition_penalty
        kept = list(resume.prefix) if resume else []  # an answer decoded again: its kept tokens end the prompt
        self.seen = set((prompt_ids if gen.penalize_prompt else []) + kept)
        self.first_ban = list(resume.ban) if resume else []
        self.rules = rules
        self.grounding = grounding
        self.prompt_len = len(prompt_ids) + len(kept)
        self.fed = 0

    def __call__(self, input_ids: np.ndarray, scores: np.ndarray) -> np.ndarray:
        for token in input_ids[self.prompt_len + self.fed:].tolist():
            self.fed += 1
            self.seen.add(token)
            if self.grounding:
                self.grounding.add(token)
        if self.penalty != 1.0 and self.seen:
            ids = np.fromiter(self.seen, dtype=np.int64, count=len(self.seen))
            penalize_(torch.from_numpy(scores)[None], torch.from_numpy(ids)[None], self.penalty)  # llama.cpp's row
        if banned := self.rules.banned():
            scores[list(banned)] = -np.inf
        if self.grounding:
            mask = self.grounding.mask().numpy()
            scores[:len(mask)][mask] = -np.inf
        if self.first_ban and not self.fed:
            scores[self.first_ban] = -np.inf
        return scores


class LlamaCppEngine:
    """A llama.cpp model behind the worker: the plain engine's public methods, its rules held in ``plain``."""

    #: One context: the worker hands over one request per call.
    continuous_slots = 1

    def __init__(self, llama, plain: GenerateEngine):
        self.llama = llama
        self.plain = plain  # prompt, stop rules, cut and post-check: the plain engine's own
        self.gen, self.tokenizer, self.persona, self.prompt_format = (plain.gen, plain.tokenizer, plain.persona,
                                                                      plain.prompt_format)
        self.max_prompt_tokens = min(plain.max_prompt_tokens, llama.n_ctx() - plain.gen.max_new_tokens - 1)
        self._lock = threading.Lock()

    @classmethod
    def load(cls, cfg: WorkerConfig, gen: GenerationConfig, note: Callable[[str], None] = log.info,
             persona: str | None = None) -> LlamaCppEngine:
        """Load ``cfg.gguf`` into llama.cpp, with the tokenizer of ``cfg``'s base and the persona of its adapter
        (or ``persona``, as :func:`mafioso.worker.engines.load_engine` takes it)."""
        try:
            import llama_cpp
        except ImportError:
            raise ConfigError(INSTALL) from None
        from pathlib import Path

        gguf = Path(cfg.gguf).expanduser()
        if not gguf.is_file():
            raise ConfigError(f"MAFIOSO_GGUF (--gguf): {cfg.gguf or '(empty)'} is not a file; write the tuned "
                              "model as one with: mafioso export gguf --adapter default --out dist/")
        adapter = adapter_folder(cfg.adapter, cfg.base_model)
        base = resolve_base(base_of(cfg.base_model, adapter))
        note(f"loading {gguf.name} with llama.cpp…")
        tokenizer = load_tokenizer(base)
        facts = _ModelFacts(base)
        context = min(getattr(facts.config.get_text_config(), "max_position_embeddings", None) or MAX_CONTEXT,
                      MAX_CONTEXT)
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        try:
            llama = llama_cpp.Llama(model_path=str(gguf), n_ctx=context, n_threads=threads,
                                    n_threads_batch=threads, seed=0, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"llama.cpp cannot load {gguf}: {exc}") from None
        if llama.n_vocab() != facts.vocab_size:
            llama.close()
            raise ModelError(f"{gguf} has {llama.n_vocab()} tokens but the base {base} has {facts.vocab_size}: "
                             "export it from the same base (mafioso export gguf --base-model ...)")
        plain = GenerateEngine(facts, tokenizer, gen, "cpu", persona or adapter_persona(adapter),
                               adapter_prompt_format(adapter))
        log.info("engine ready: llama.cpp %s, %d threads, context %d, base %s (tokenizer), adapter %s",
                 gguf, threads, context, base, adapter or "none")
        return cls(llama, plain)

    def close(self) -> None:
        """Free llama.cpp's model and context."""
        self.llama.close()

    def prompt_tokens(self, code: str, request: str | None = None) -> int:
        """How many tokens the prompt for ``code`` takes (the input guard compares it to the context)."""
        return self.plain.prompt_tokens(code, request)

    def text_so_far(self, code: str, ids: list[int]) -> str:
        """The answer's text if it ended after ``ids``, cut and checked as :meth:`generate` does."""
        return self.plain.text_so_far(code, ids)

    def generate(self, requests: list[tuple[str, str | None]],
                 controls: list[Control] | None = None) -> list[Generation]:
        """Explain ``(code, request)`` pairs one after another; answers come back in order, each cut at its
        control's ``max_tokens`` and stopped when it is cancelled, like the plain engine's."""
        return answer_with_retries(self.plain, requests, controls or [Control() for _ in requests], self._decode_all)

    def _decode_all(self, prompt_ids: list[list[int]], controls: list[Control],
                    grounding: list[AnswerGrounding] | None = None,
                    resumes: list[Resume] | None = None) -> list[tuple[list[int], int | None]]:
        """:meth:`decode` for each prompt in turn, as ``GenerateEngine.decode`` takes a batch."""
        grounding = grounding or [None] * len(prompt_ids)
        resumes = resumes or [None] * len(prompt_ids)
        return [self.decode(*row) for row in zip(prompt_ids, controls, grounding, resumes, strict=True)]

    def decode(self, prompt_ids: list[int], control: Control, grounding: AnswerGrounding | None = None,
               resume: Resume | None = None) -> tuple[list[int], int | None]:
        """One answer from llama.cpp: its tokens and where ``###`` or a loop stopped it (or None); it also stops
        at EOS, at the control's limit and when the control is cancelled. Each token goes to the control.
        ``resume``: the answer continued from its kept tokens (:class:`mafioso.worker.retry.Resume`)."""
        gen = self.gen
        limit = control.limit(gen.max_new_tokens)
        tokens: list[int] = list(resume.prefix) if resume else []
        rules = self.plain.rules.for_answer(control.stop, tokens, control.cut)  # ###, stop strings, loops, bans, cut
        sampling = control.decoding(gen)
        stop = None
        with self._lock:
            if not sampling.greedy:
                self.llama.set_seed(sampling.seed_value(32))  # its sampler chain is built per generate call
            steps = self.llama.generate(prompt_ids + tokens, top_k=0, min_p=0.0, typical_p=1.0, repeat_penalty=1.0,
                                        logits_processor=[_AnswerRules(gen, prompt_ids, rules, grounding, resume)],
                                        temp=sampling.temperature, top_p=sampling.top_p)
            for token in steps:
                if control.cancelled:
                    break
                tokens.append(token)
                control.emit(token)
                if token in self.plain.eos_ids or len(tokens) >= limit:
                    break
                if rules.add(token):
                    stop = rules.stop
                    break
            steps.close()
        return tokens, stop
