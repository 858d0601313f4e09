"""The fast engine: :class:`mafioso.worker.engine.Engine` with decoding moved onto :class:`mafioso.worker.fast_decode.Gemma3Decoder`.

One decode thread owns the GPU. Callers (the worker calls with one request at a time, up to one call per
slot) drop prompts into its inbox; the thread admits them into free KV-cache slots between decode steps, so
a request never waits for a whole batch to finish (continuous batching). Prompts admitted together are
prefilled together, in padded batches of similar length; while rows decode, admissions wait for
``admit_every`` steps so that prefills, which stall every running row, come in groups. Greedy decoding
only: sampling, non-Gemma-3 models and quantized weights use the reference ``model.generate`` path of the
base class. On CUDA the decode step runs in CUDA graphs (torch.compile'd by default); on a CPU, eagerly.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import torch

from mafioso import prompts
from mafioso.worker.control import Control
from mafioso.worker.engine import Engine
from mafioso.worker.fast_decode import Gemma3Decoder
from mafioso.worker.grounded_decoding import AnswerGrounding
from mafioso.worker.loop_guard import LoopGuard, LoopRule
from mafioso.worker.ngram_ban import NgramBan
from mafioso.worker.vocab_tables import tokens_containing

log = logging.getLogger(__name__)

#: The most tokens the facts sheet adds to a prompt: its bound (prompts.FACTS_MAX_TOKENS, an estimate up to
#: ~1/6 under the real count) and its "### FACTS:" header. Slots grow by this, so code that fitted before
#: the sheet still fits.
FACTS_TOKENS = prompts.FACTS_MAX_TOKENS * 5 // 4 + 8


@dataclass
class _Row:
    prompt: list[int]
    future: Future
    limit: int  # most tokens: the request's max_tokens within max_new_tokens
    control: Control  # read once per step: a cancelled row leaves its slot
    generated: list[int] = field(default_factory=list)
    stop: int | None = None  # tokens generated when a ### section or a loop stopped it
    ngrams: NgramBan | None = None  # GenerationConfig.no_repeat_ngram
    loops: LoopGuard | None = None  # GenerationConfig.stop_loops
    bans: frozenset[int] = frozenset()  # the tokens banned for its slot now
    grounding: AnswerGrounding | None = None  # GenerationConfig.grounded_decoding
    regrounded: bool = False  # the grounding mask changed since the slot's bans were last written


@dataclass
class DecodeStats:
    """What the decode thread did since start-up; subtract two readings for a window. Its time is waiting for
    requests (``idle_s``), prefilling (``prefill_s``), waiting for the device to finish a decode step
    (``wait_s``), and host work: the rest. With lookahead, a device-bound loop spends most of a step in
    ``wait_s``; a host-bound one almost none of it."""

    steps: int = 0  # decode steps launched
    step_rows: int = 0  # running rows summed over those steps
    wait_s: float = 0.0
    prefills: int = 0  # prefill batches
    prefill_prompts: int = 0
    prefill_s: float = 0.0
    idle_s: float = 0.0
    cancelled: int = 0  # rows stopped because nobody waited for them any more


def prefill_groups(rows: list[tuple[int, _Row]], budget: int) -> list[list[tuple[int, _Row]]]:
    """Split (slot, row) pairs into prefill batches, similar lengths together, each padded batch holding at most
    ``budget`` tokens (rows x longest prompt): a prefill's memory grows with its padded tokens, so a burst of
    prompts cannot push the worker past its memory."""
    groups: list[list[tuple[int, _Row]]] = []
    for pair in sorted(rows, key=lambda pair: len(pair[1].prompt)):
        longest = len(pair[1].prompt)
        if groups and (len(groups[-1]) + 1) * longest <= budget:
            groups[-1].append(pair)
        else:
            groups.append([pair])
    return groups


def gpu_memory_gb() -> dict[str, float]:
    """GPU memory now, in GB: torch's allocations, their peak, what torch's allocator reserved, and what the
    whole card has in use (with the CUDA context and libraries)."""
    free, total = torch.cuda.mem_get_info()
    return {name: round(count / 1e9, 3) for name, count in (
        ("allocated", torch.cuda.memory_allocated()), ("peak", torch.cuda.max_memory_allocated()),
        ("reserved", torch.cuda.memory_reserved()), ("card_in_use", total - free))}


class _GpuMemory:
    """torch's allocated GPU memory at the steps of start-up: what each step added, in GB."""

    def __init__(self):
        self.last = torch.cuda.memory_allocated()
        self.added = {"model": round(self.last / 1e9, 3)}  # weights and buffers, on the GPU before us

    def mark(self, step: str) -> dict[str, float]:
        now = torch.cuda.memory_allocated()
        self.added[step] = round((now - self.last) / 1e9, 3)
        self.last = now
        return {**self.added, **gpu_memory_gb()}


class FastEngine(Engine):
    """An engine whose greedy decode runs on per-slot KV caches (CUDA-graph decode steps on a GPU)."""

    #: While rows decode, waiting prompts are admitted (and prefilled, stalling every running row) at most
    #: once every this many steps (``admit_every``), so prefills happen in groups rather than one per arriving
    #: request. A prefill cost ~10 decode steps on the GPU before prefill graphs (~3 on a CPU; docs/BENCHMARKS.md).
    gpu_admit_every = 16
    cpu_admit_every = 4
    #: Slots on a CPU: throughput there stops growing past ~16 rows (docs/BENCHMARKS.md), the cache would not.
    cpu_slots = 16
    #: Most padded tokens in one prefill batch (rows x longest prompt): 16 prompts of 256 tokens. On the GPU
    #: the decoder pads a batch further, to its prefill graph's bucket, and splits one that no bucket holds.
    prefill_tokens = 4096
    #: On the GPU, slots for prompts longer than ``short_prompt_tokens``; the other slots keep a full-attention
    #: cache for short prompts only (~1,000 tokens, ~3,000 characters of code, plus the facts sheet): 8 long
    #: slots of 64 make the KV cache ~0.8 GB instead of 1.05, and served as fast on the H100 (docs/BENCHMARKS.md,
    #: "Short and long slots"; measured before the facts sheet made every slot ~400 tokens longer). A long
    #: prompt waits for a long slot; a short one takes a long slot only when every short slot is busy. None =
    #: every slot long.
    long_slots: int | None = 8
    short_prompt_tokens = 1024 + FACTS_TOKENS
    #: Compute the keys of the instruction every prompt starts with once (prompts.shared_prefix_ids): a prefill
    #: then runs only the request and the code, ~1/3 of a typical prompt's tokens (docs/BENCHMARKS.md).
    share_prefix = True

    def __init__(self, model, tokenizer, gen, device: str, slots: int, max_len: int, compile: bool = False,
                 lookahead: bool | None = None, long_slots: int | None = None, compile_scope: str = "step",
                 persona: str = prompts.DEFAULT_PERSONA):
        super().__init__(model, tokenizer, gen, device, persona)
        gpu = _GpuMemory() if device == "cuda" else None
        self.decoder = self.build_decoder(model, tokenizer, gen, slots, max_len, compile, long_slots, compile_scope,
                                          persona)
        self.stats = DecodeStats()
        #: Launch each decode step before reading the last one's tokens, so the GPU never waits for the host
        #: (default: with CUDA graphs). A finished row then costs one discarded step. Off with n-gram bans,
        #: which must know a step's token before the next step runs.
        self.lookahead = ((self.decoder.cuda_graphs if lookahead is None else lookahead) and not gen.no_repeat_ngram
                          and not gen.grounded_decoding)
        self.admit_every = self.gpu_admit_every if self.decoder.cuda_graphs else self.cpu_admit_every
        self.max_prompt_tokens = min(self.max_prompt_tokens, max_len - gen.max_new_tokens - 1)
        self._hashy = tokens_containing(tokenizer, "#")  # cached per tokenizer: ~2 s over 262k tokens
        self._inbox: queue.Queue[_Row | None] = queue.Queue()
        self._deferred: list[_Row] = []  # taken from the inbox, waiting for a long slot
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="mafioso-decode", daemon=True)
        if gpu:
            gpu.mark("decoder")  # KV cache, fixed step buffers
        self.decoder.warm_up()
        #: GPU memory in GB at start-up (empty on a CPU): weights and buffers, KV cache, warm-up, peak
        self.memory = gpu.mark("warm_up") if gpu else {}
        self._thread.start()
        log.info("fast decode path: %d slots (%d of %d tokens, %d of %d), KV cache %.2f GB, shared prefix %d "
                 "tokens, CUDA graphs %s, torch.compile: %s; warm-up: %s", slots, self.decoder.short_slots,
                 self.decoder.short_len, slots - self.decoder.short_slots, max_len, self.decoder.cache_bytes / 1e9,
                 len(self.decoder.prefix), "on" if self.decoder.cuda_graphs else "off",
                 self.decoder.compile_scope or "off",
                 ", ".join(f"{part} {s} s" for part, s in self.decoder.warm_up_s.items()) or "nothing to compile")
        if self.memory:
            log.info("GPU memory (GB, torch allocations): %s", self.memory)

    @property
    def continuous_slots(self) -> int:
        """Requests the engine decodes at once; the worker hands them over one by one (see mafioso.worker.service)."""
        return self.decoder.slots if self.decoder is not None else 1

    @classmethod
    def build_decoder(cls, model, tokenizer, gen, slots: int, max_len: int, compile: bool,
                      long_slots: int | None, compile_scope: str = "step",
                      persona: str = prompts.DEFAULT_PERSONA) -> Gemma3Decoder:
        """The engine's decoder, set up for ``gen`` (penalty, n-gram bans, the shared prefix), not warmed up."""
        decoder = Gemma3Decoder(model, slots=slots, max_len=max_len, compile=compile, compile_scope=compile_scope,
                                prefill_tokens=cls.prefill_tokens, **cls.slot_split(slots, long_slots, gen))
        decoder.set_repetition_penalty(gen.repetition_penalty, gen.penalize_prompt)
        if gen.no_repeat_ngram or gen.grounded_decoding:
            decoder.enable_ngram_bans()
        if cls.share_prefix:
            decoder.set_prefix(prompts.shared_prefix_ids(tokenizer, persona))
        return decoder

    @classmethod
    def slot_split(cls, slots: int, long_slots: int | None, gen) -> dict:
        """Gemma3Decoder's ``short_slots`` and ``short_len`` when ``long_slots`` of ``slots`` take long prompts
        (None: every slot does)."""
        short = slots - long_slots if long_slots is not None and 0 < long_slots < slots else 0
        return {"short_slots": short, "short_len": cls.short_prompt_tokens + gen.max_new_tokens + 1}

    @staticmethod
    def slot_length(cfg, gen) -> int:
        """KV-cache length per slot: the instruction plus code of ``max_input_chars`` (about 3 characters a
        token) plus its facts sheet, rounded up to 512, plus a full answer. Longer prompts still work, on the
        reference path."""
        return -(-(cfg.max_input_chars // 3 + 256 + FACTS_TOKENS) // 512) * 512 + gen.max_new_tokens

    @staticmethod
    def supports(model, gen, quantization: str) -> bool:
        """Whether the fast path can serve this model and these settings."""
        text = model.config.get_text_config()
        return (quantization == "none" and not gen.do_sample and getattr(text, "model_type", "") == "gemma3_text"
                and not text.final_logit_softcapping and not text.attn_logit_softcapping)

    def decode(self, prompt_ids: list[list[int]], controls: list[Control] | None = None,
               grounding: list[AnswerGrounding] | None = None) -> list[tuple[list[int], int | None]]:
        """Queue the prompts for the decode thread and wait; prompts too long for a slot take the slow path."""
        if self.decoder is None:
            raise RuntimeError("the engine is closed")
        controls = controls or [Control() for _ in prompt_ids]
        fits = [len(ids) <= self.max_prompt_tokens for ids in prompt_ids]
        n = self.gen.no_repeat_ngram
        rule = LoopRule.of(self.gen) if self.gen.stop_loops else None
        grounding = grounding or [None] * len(prompt_ids)
        rows = [_Row(ids, Future(), control.limit(self.gen.max_new_tokens), control,
                     ngrams=NgramBan(n) if n else None, loops=LoopGuard(rule, self.pieces) if rule else None,
                     grounding=ground)
                for ids, control, ground, ok in zip(prompt_ids, controls, grounding, fits) if ok]
        for row in rows:
            self._inbox.put(row)
        long = iter(super().decode([ids for ids, ok in zip(prompt_ids, fits) if not ok],
                                   [c for c, ok in zip(controls, fits) if not ok],
                                   [g for g, ok in zip(grounding, fits) if not ok] if any(grounding) else None)
                    if not all(fits) else [])
        fast = iter([row.future.result() for row in rows])
        return [next(fast) if ok else next(long) for ok in fits]

    # ------------------------------------------------------------------------------ the decode thread

    def close(self) -> None:
        """Stop the decode thread once it has finished the rows it holds, and free the KV cache."""
        if self._thread.is_alive():
            self._inbox.put(None)
            self._thread.join()
        while not self._inbox.empty():  # queued behind the close: refuse, never leave a caller waiting
            row = self._inbox.get()
            if row is not None:
                row.future.set_exception(RuntimeError("the engine is closed"))
        self.decoder = None

    def _loop(self) -> None:
        active: dict[int, _Row] = {}
        steps = 0  # since the last admission
        pending = None  # with lookahead: the launched step whose tokens are not read yet
        while not self._closing or active or self._deferred:
            try:
                if not active or steps >= self.admit_every:
                    if pending is not None:  # a slot that step frees may be refilled: read its tokens first
                        self._collect(active, pending)
                        pending = None
                    self._admit(active, block=not active)
                    steps = 0
                if active:
                    self._drop_cancelled(active)
                if active:
                    launched = self.decoder.launch(max(active) + 1)
                    self.stats.steps += 1
                    self.stats.step_rows += len(active)
                    if pending is not None:
                        self._collect(active, pending)
                    pending = launched
                    if not self.lookahead:
                        self._collect(active, pending)
                        pending = None
                    steps += 1
            except Exception as exc:  # noqa: BLE001 - one bad step must fail its requests, not the thread
                log.exception("decode step failed; failing %d request(s)", len(active))
                for row in active.values():
                    if not row.future.done():
                        row.future.set_exception(exc)
                active.clear()
                pending = None

    def _admit(self, active: dict[int, _Row], block: bool) -> None:
        """Move waiting rows into free slots and prefill them, several prompts per forward pass."""
        free = [slot for slot in range(self.decoder.slots) if slot not in active]  # short slots first
        new: list[tuple[int, _Row]] = []

        def place(row: _Row) -> None:
            if row.control.cancelled:  # gone before it got a slot
                self.stats.cancelled += 1
                row.future.set_result((row.generated, None))
                return
            short = len(row.prompt) + self.gen.max_new_tokens < self.decoder.short_len
            slot = next((s for s in free if short or s >= self.decoder.short_slots), None)
            if slot is None:
                self._deferred.append(row)
            else:
                free.remove(slot)
                new.append((slot, row))

        waiting, self._deferred = self._deferred, []
        for row in waiting:
            place(row)
        block = block and not new
        while free and not self._closing:
            started = time.perf_counter()
            try:
                row = self._inbox.get(block=block)
            except queue.Empty:
                break
            finally:
                if block:
                    self.stats.idle_s += time.perf_counter() - started
            if row is None:  # close(): admit nothing more
                self._closing = True
                break
            block = False
            place(row)
        active.update(new)  # all of them before any prefill: if one fails, _loop fails every admitted row
        for group in prefill_groups(new, self.prefill_tokens):
            started = time.perf_counter()
            firsts = self.decoder.prefill_many([slot for slot, _ in group], [row.prompt for _, row in group],
                                               [row.grounding.mask() if row.grounding else None for _, row in group])
            self.stats.prefill_s += time.perf_counter() - started
            self.stats.prefills += 1
            self.stats.prefill_prompts += len(group)
            for (slot, _), first in zip(group, firsts, strict=True):
                self._record(active, slot, first)
        self._update_bans(active)

    def _collect(self, active: dict[int, _Row], launched) -> None:
        """Record a launched step's token for every running row (rows that ended since it was launched are
        gone from ``active``: their token is dropped)."""
        started = time.perf_counter()
        tokens = self.decoder.collect(launched)
        self.stats.wait_s += time.perf_counter() - started
        for slot in list(active):
            self._record(active, slot, tokens[slot])
        self._update_bans(active)

    def _update_bans(self, active: dict[int, _Row]) -> None:
        """Hand the decoder each running answer's bans for its next token (n-gram bans, grounded decoding),
        where they changed."""
        if not self.decoder.ban_ngrams:
            return
        lift, ban = [], []
        for slot, row in active.items():
            now = frozenset(row.ngrams.banned()) if row.ngrams is not None else frozenset()
            if row.grounding is not None:
                if row.regrounded or now != row.bans:  # the whole row: the span's mask, then the n-gram bans
                    mask = row.grounding.mask()
                    if now:
                        mask = mask.clone()
                        mask[list(now)] = True
                    self.decoder.set_ban_row(slot, mask)
                    row.bans, row.regrounded = now, False
            elif now != row.bans:
                lift += [(slot, token) for token in row.bans]
                ban += [(slot, token) for token in now]
                row.bans = now
        self.decoder.set_bans(lift, ban)

    def _drop_cancelled(self, active: dict[int, _Row]) -> None:
        """Free the slots of rows nobody waits for (a flag read per row per step); their callers get what they
        have, for nobody. A step already launched for them is dropped like a finished row's."""
        for slot in [slot for slot, row in active.items() if row.control.cancelled]:
            row = active.pop(slot)
            self.stats.cancelled += 1
            row.future.set_result((row.generated, row.stop))

    def _record(self, active: dict[int, _Row], slot: int, token: int) -> None:
        """Append one token to a slot's answer; finish the row at EOS, ###, a loop or the token budget."""
        row = active[slot]
        row.generated.append(token)
        row.control.emit(token)
        if row.ngrams is not None:
            row.ngrams.add(token)
        if row.grounding is not None and row.grounding.add(token):
            row.regrounded = True
        if token in self._hashy and row.stop is None:
            tail = self.tokenizer.decode(row.generated[-3:])
            if prompts.SECTION_MARKER in tail:
                row.stop = len(row.generated)
        if row.loops is not None and row.stop is None and row.loops.add(token):
            row.stop = len(row.generated)
        if token in self.eos_ids or row.stop is not None or len(row.generated) >= row.limit:
            del active[slot]
            row.future.set_result((row.generated, row.stop))
