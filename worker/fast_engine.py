"""The fast engine: decoding with continuous batching on :class:`mafioso.worker.fast_decode.FastDecoder`.

One decode thread owns the GPU. Callers (the worker calls with one request at a time, up to one call per
slot) drop prompts into its inbox; the thread admits them into free KV-cache slots between decode steps, so
a request never waits for a whole batch to finish (continuous batching). Prompts admitted together are
prefilled together, in padded batches of similar length; while rows decode, admissions wait for
``admit_every`` steps so that prefills, which stall every running row, come in groups.
Architectures :mod:`mafioso.worker.models` has no maths for (it has Gemma 3 and Qwen2) and quantized
weights are served by the plain :class:`mafioso.worker.engine.GenerateEngine`
(:func:`mafioso.worker.engines.load_engine` chooses); the fast engine holds one too, for prompts too long for
its slots and to finish every answer the same way. On CUDA the decode step runs in CUDA graphs
(torch.compile'd by default), and answers a request asks to sample (:mod:`mafioso.worker.sampling`) take the
plain engine's path; on a CPU the step runs eagerly, and a sampled answer takes a slot like any other: its
tokens are drawn on the host after the step's bans (:meth:`FastDecoder.set_sampling`).
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from itertools import compress

import torch

from mafioso import prompts
from mafioso.worker.control import Control
from mafioso.worker import models
from mafioso.worker.decoder_settings import CPU_ADMIT_EVERY, GPU_ADMIT_EVERY, GPU_SWITCH_INTERVAL_S, DecoderSettings
from mafioso.worker.decoding_rules import AnswerRules, host_bans
from mafioso.worker.engine import GenerateEngine, Generation
from mafioso.worker.fast_decode import FastDecoder
from mafioso.worker.grounded_decoding import AnswerGrounding
from mafioso.worker.retry import Resume, answer_with_retries
from mafioso.worker.sampling import GREEDY

log = logging.getLogger(__name__)



@dataclass
class _Row:
    prompt: list[int]
    future: Future
    limit: int  # most tokens: the request's max_tokens within max_new_tokens
    control: Control  # read once per step: a cancelled row leaves its slot
    generated: list[int] = field(default_factory=list)
    rules: AnswerRules | None = None  # stop at ### or a loop, n-gram bans (mafioso.worker.decoding_rules)
    bans: frozenset[int] = frozenset()  # the n-gram bans set for its slot now
    grounding: AnswerGrounding | None = None  # GenerationConfig.grounded_decoding: the decoder follows it
    kept: list[int] = field(default_factory=list)  # an answer decoded again: its kept tokens (prompt's end)
    first_ban: frozenset[int] = frozenset()  # and the tokens its first new one may not be

    @property
    def reach(self) -> int:
        """A position past every one its decode steps attend from (its prompt plus a whole answer)."""
        return len(self.prompt) + self.limit

    @property
    def stop(self) -> int | None:
        """Tokens generated when a ### section or a loop stopped it (None: they did not)."""
        return self.rules.stop if self.rules is not None else None


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
    # where the host work goes (issue 17's host-bound steps): launching steps, recording their tokens (the stop
    # rules, finishing rows), admitting rows (prefill and idle apart)
    launch_s: float = 0.0
    record_s: float = 0.0
    admit_s: float = 0.0


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


class FastEngine:
    """An engine whose greedy decode runs on per-slot KV caches (CUDA-graph decode steps on a GPU); it holds
    the plain engine (``self.plain``) for prompts too long for a slot and for finishing answers."""

    def __init__(self, model, tokenizer, gen, device: str, settings: DecoderSettings,
                 persona: str = prompts.DEFAULT_PERSONA, prompt_format: int = prompts.PROMPT_FORMAT):
        self.plain = GenerateEngine(model, tokenizer, gen, device, persona, prompt_format)
        self.model, self.tokenizer, self.gen, self.device, self.persona = model, tokenizer, gen, device, persona
        self.prompt_format = prompt_format
        self.eos_ids = self.plain.eos_ids
        self.settings = settings
        gpu = _GpuMemory() if device == "cuda" else None
        self.decoder = build_decoder(model, tokenizer, gen, settings, persona)
        self.stats = DecodeStats()
        #: Launch each decode step before reading the last one's tokens, so the GPU never waits for the host
        #: (a finished row then costs one discarded step); see DecoderSettings.lookahead. Off with n-gram bans,
        #: which the host must compute from a step's token before the next step runs (grounded decoding is
        #: followed on the device: it keeps the lookahead).
        lookahead = self.decoder.cuda_graphs if settings.lookahead is None else settings.lookahead
        self.lookahead = lookahead and not host_bans(gen)
        self.admit_every = settings.admit_every or (GPU_ADMIT_EVERY if self.decoder.cuda_graphs else CPU_ADMIT_EVERY)
        switch = settings.switch_interval_s or (GPU_SWITCH_INTERVAL_S if self.decoder.cuda_graphs else None)
        if switch:  # process-wide: the decode thread gets the GIL back soon after each wait for the device
            sys.setswitchinterval(switch)
        #: Longest prompt a slot holds with a full answer; longer ones go to the plain engine.
        self.max_prompt_tokens = min(self.plain.max_prompt_tokens, settings.max_len - gen.max_new_tokens - 1)
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
        slots, max_len, short_slots = settings.slots, settings.max_len, self.decoder.short_slots
        log.info("fast decode path: %d slots (%d of %d tokens, %d of %d), KV cache %.2f GB, shared prefix %d "
                 "tokens, CUDA graphs %s, torch.compile: %s; warm-up: %s", slots, short_slots,
                 self.decoder.short_len, slots - short_slots, max_len, self.decoder.cache_bytes / 1e9,
                 len(self.decoder.prefix), "on" if self.decoder.cuda_graphs else "off",
                 self.decoder.compile_scope or "off",
                 ", ".join(f"{part} {s} s" for part, s in self.decoder.warm_up_s.items()) or "nothing to compile")
        if self.memory:
            log.info("GPU memory (GB, torch allocations): %s", self.memory)

    @property
    def continuous_slots(self) -> int:
        """Requests the engine decodes at once; the worker hands them over one by one (see mafioso.worker.service)."""
        return self.decoder.slots if self.decoder is not None else 1

    @staticmethod
    def supports(model, gen, quantization: str) -> bool:
        """Whether the fast path can serve this model and these settings: unquantized, an architecture it has the
        maths for, and greedy by default unless the model is on a CPU (where its slots sample too)."""
        on_cpu = next(model.parameters()).device.type == "cpu"
        return quantization == "none" and (on_cpu or not gen.do_sample) and models.supports(model)

    def prompt_tokens(self, code: str, request: str | None = None) -> int:
        """How many tokens the prompt for ``code`` takes (the input guard compares it to the context)."""
        return self.plain.prompt_tokens(code, request)

    def generate(self, requests: list[tuple[str, str | None]],
                 controls: list[Control] | None = None) -> list[Generation]:
        """Explain a batch of ``(code, request)`` pairs; answers come back in order, finished exactly as the
        plain engine finishes its own (:meth:`GenerateEngine.answers`)."""
        if not requests:
            return []
        return answer_with_retries(self.plain, requests, controls or [Control() for _ in requests], self.decode)

    def text_so_far(self, code: str, ids: list[int]) -> str:
        """The answer's text if it ended after ``ids``, as the plain engine would finish it (streams)."""
        return self.plain.text_so_far(code, ids)

    def decode(self, prompt_ids: list[list[int]], controls: list[Control] | None = None,
               grounding: list[AnswerGrounding] | None = None,
               resumes: list[Resume] | None = None) -> list[tuple[list[int], int | None]]:
        """Queue the prompts for the decode thread and wait; prompts too long for a slot, and sampled answers
        where the decoder cannot draw (CUDA graphs: :attr:`FastDecoder.samples`), take the plain engine's path.
        ``resumes``: answers continued from their kept tokens, as :meth:`GenerateEngine.decode` takes them."""
        if self.decoder is None:
            raise RuntimeError("the engine is closed")
        controls = controls or [Control() for _ in prompt_ids]
        resumes = resumes or [None] * len(prompt_ids)
        fits = [len(ids) + len(resume.prefix if resume else ()) <= self.max_prompt_tokens
                and (self.decoder.samples or control.decoding(self.gen).greedy)
                for ids, control, resume in zip(prompt_ids, controls, resumes, strict=True)]
        grounding = grounding or [None] * len(prompt_ids)
        rows = [self._row(ids, control, ground, resume)
                for ids, control, ground, resume, ok in zip(prompt_ids, controls, grounding, resumes, fits) if ok]
        for row in rows:
            self._inbox.put(row)
        slow = [not ok for ok in fits]
        long = iter(self.plain.decode(list(compress(prompt_ids, slow)), list(compress(controls, slow)),
                                      list(compress(grounding, slow)) if any(grounding) else None,
                                      list(compress(resumes, slow)) if any(resumes) else None)
                    if any(slow) else [])
        fast = iter([row.future.result() for row in rows])
        return [next(fast) if ok else next(long) for ok in fits]

    def _row(self, prompt: list[int], control: Control, grounding: AnswerGrounding | None,
             resume: Resume | None) -> _Row:
        """A row for the decode thread; a resumed answer's kept tokens go into its prompt and its rules, and
        count against its limit (:class:`mafioso.worker.retry.Resume`)."""
        prefix = list(resume.prefix) if resume else []
        rules = self.plain.rules.for_answer(control.stop, prefix, control.cut)
        # its first token: the resume's ban, and the n-gram bans of the kept tokens (set per slot after a prefill)
        first_ban = resume.ban | frozenset(rules.banned()) if resume else frozenset()
        return _Row(prompt + prefix, Future(), control.limit(self.gen.max_new_tokens) - len(prefix), control,
                    rules=rules, grounding=grounding, kept=prefix, first_ban=first_ban)

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
                    started, timed = time.perf_counter(), self.stats.prefill_s + self.stats.idle_s
                    self._admit(active, block=not active)
                    elapsed = time.perf_counter() - started  # less its prefills and idle wait, timed apart
                    self.stats.admit_s += elapsed - (self.stats.prefill_s + self.stats.idle_s - timed)
                    steps = 0
                if active:
                    self._drop_cancelled(active)
                if active:
                    started = time.perf_counter()
                    launched = self.decoder.launch(max(active) + 1, max(row.reach for row in active.values()))
                    self.stats.launch_s += time.perf_counter() - started
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
                row.future.set_result((row.kept + row.generated, None))
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
        for slot, row in new:
            self.decoder.set_sampling(slot, row.control.decoding(self.gen))
        for group in prefill_groups(new, self.settings.prefill_tokens):
            started = time.perf_counter()
            firsts = self.decoder.prefill_many([slot for slot, _ in group], [row.prompt for _, row in group],
                                               [row.grounding.tables() if row.grounding else None for _, row in group],
                                               [(len(row.kept), row.first_ban) for _, row in group])
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
        waited = time.perf_counter()
        self.stats.wait_s += waited - started
        for slot in list(active):
            self._record(active, slot, tokens[slot])
        self._update_bans(active)
        self.stats.record_s += time.perf_counter() - waited

    def _update_bans(self, active: dict[int, _Row]) -> None:
        """Hand the decoder each running answer's n-gram bans for its next token, where they changed (grounded
        decoding needs nothing per step: the decoder follows it)."""
        if not self.decoder.ban_ngrams:
            return
        lift, ban = [], []
        for slot, row in active.items():
            if (now := frozenset(row.rules.banned())) != row.bans:
                lift += [(slot, token) for token in row.bans]
                ban += [(slot, token) for token in now]
                row.bans = now
        self.decoder.set_bans(lift, ban)

    def _drop_cancelled(self, active: dict[int, _Row]) -> None:
        """Free the slots of rows nobody waits for (a flag read per row per step); their callers get what they
        have, for nobody. A step already launched for them is dropped like a finished row's."""
        for slot in [slot for slot, row in active.items() if row.control.cancelled]:
            row = active.pop(slot)
            self.decoder.set_sampling(slot, GREEDY)
            self.stats.cancelled += 1
            row.future.set_result((row.kept + row.generated, row.stop))

    def _record(self, active: dict[int, _Row], slot: int, token: int) -> None:
        """Append one token to a slot's answer; finish the row at EOS, ###, a loop or the token budget."""
        row = active[slot]
        row.generated.append(token)
        row.control.emit(token)
        stopped = row.rules is not None and row.rules.add(token)  # ### or a loop
        if stopped or token in self.eos_ids or len(row.generated) >= row.limit:
            del active[slot]
            self.decoder.set_sampling(slot, GREEDY)
            row.future.set_result((row.kept + row.generated, row.stop))


def build_decoder(model, tokenizer, gen, settings: DecoderSettings,
                  persona: str = prompts.DEFAULT_PERSONA) -> FastDecoder:
    """The engine's decoder, set up for ``gen`` (penalty, bans), ``settings`` and the shared prefix of
    ``persona``'s prompts, not warmed up."""
    decoder = FastDecoder(model, slots=settings.slots, max_len=settings.max_len, compile=settings.compile,
                            compile_scope=settings.compile_scope, prefill_tokens=settings.prefill_tokens,
                            **settings.slot_split(gen))
    decoder.set_repetition_penalty(gen.repetition_penalty, penalize_prompt=gen.penalize_prompt)
    if host_bans(gen):
        decoder.enable_ngram_bans()
    if gen.grounded_decoding:
        decoder.enable_grounding()
    if settings.share_prefix:
        decoder.set_prefix(prompts.shared_prefix_ids(tokenizer, persona))
    return decoder
