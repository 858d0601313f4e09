"""A serving-only decode loop: per-slot KV cache, continuous batching, CUDA graphs, for every architecture
:mod:`mafioso.worker.models` has the maths of (Gemma 3, Qwen2).

``model.generate`` spends almost all of a decode step of a 270M model in Python and kernel launches. This
module runs the same maths (the architecture's module computes everything but the attention over the cache) on
the same (merged) weights with:

* a static KV cache of ``slots`` rows, each slot at its own position, so a request can join or leave the
  running batch between any two decode steps (continuous batching);
* each decode step attends over the full-attention caches only as far as its rows reach (a key span of 256,
  512, … positions that covers their prompts and whole answers), not over whole slots;
* one decode step per batch-size bucket (1, 2, 4, … slots) and key span captured once in a CUDA graph and
  replayed, and one prefill per (prompts, tokens) bucket: batches are padded to their bucket, the padding's keys
  go to a spare cache row; a decode step's graph also copies its tokens to the host and records the event that
  says they are there (twin graphs, one per host buffer), so launching a step is one call into CUDA;
* greedy decoding and the repetition penalty (:mod:`mafioso.worker.repetition_penalty`, on a (slots, vocab) mask
  of the tokens each slot has seen) inside the graph, exactly as transformers computes them, and
  optional per-slot token bans set between steps (no repeated n-grams, :mod:`mafioso.worker.ngram_ban`);
* grounded decoding (:mod:`mafioso.worker.grounded_decoding`) on the device: each slot's two ban masks (outside a
  backtick span, inside one) and its span-flipping tokens, with the slot's in-span state updated by each step's
  own token, so a step's bans never wait for the host to read the last token (the engine's lookahead stays on).

Correctness is pinned by a test that compares its greedy tokens with ``model.generate`` on a tiny model.
"""

from __future__ import annotations

import logging
import math
import time

import torch
import torch.nn.functional as F

from mafioso.core.config import COMPILE_SCOPES
from mafioso.worker.models import Layer, decoder_model
from mafioso.worker.repetition_penalty import penalize
from mafioso.worker.sampling import Sampling

_NEG_INF = float("-inf")

#: A decode step reads a full-attention cache only as far as its rows can reach: the smallest of these spans
#: that covers them (or the whole cache). A slot holds a long prompt plus its answer, most prompts are short.
KEY_SPANS = (256, 512, 1024, 2048, 4096, 8192)

log = logging.getLogger(__name__)


def chunked_argmax(logits: torch.Tensor, chunks: int = 512) -> torch.Tensor:
    """``logits.argmax(-1)`` of a (rows, vocab) tensor in two stages over equal slices of the vocabulary (at most
    ``chunks``, as many as divide it: 512 for Gemma's 262,144 tokens, 128 for Qwen2's 151,936): the same index
    (the first maximum), but one row's reduction runs in parallel (compiled as one reduction, a single block went
    through Gemma's 262k logits alone: 73 us of a 1.06 ms step at batch 1)."""
    rows, vocab = logits.shape
    chunks = math.gcd(vocab, chunks)
    if chunks == 1:
        return logits.argmax(-1)
    sliced = logits.view(rows, chunks, vocab // chunks)
    inner = sliced.argmax(-1)  # (rows, chunks): the first maximum of each slice
    best = sliced.gather(-1, inner[..., None]).squeeze(-1).argmax(-1)  # the first slice holding the maximum
    return best * (vocab // chunks) + inner.gather(-1, best[:, None]).squeeze(-1)


def _varying(tensor: torch.Tensor, *dims: int) -> torch.Tensor:
    """``tensor``, its sizes ``dims`` marked as the ones a compiled function keeps symbolic (the batch, a prompt's
    length): what is not marked stays static under ``dynamic=False``. Traced inside a compiled step it does
    nothing (the step's own input carries the symbol)."""
    if not torch.compiler.is_compiling():
        for dim in dims:
            torch._dynamo.maybe_mark_dynamic(tensor, dim)  # a size of 1 is still specialised
    return tensor


def _clear_cublas_workspaces() -> None:
    """Free the workspaces cuBLAS keeps per stream (after the GPU is done with them)."""
    clear = getattr(torch._C, "_cuda_clearCublasWorkspaces", None)
    if clear is not None:
        torch.cuda.synchronize()
        clear()


class FastDecoder:
    """Prefill and decode for a (merged, unquantized) transformers causal LM of a served architecture
    (:func:`mafioso.worker.models.decoder_model`) on one device."""

    #: Cache parts hold a multiple of this many positions: cuBLAS runs a bf16 matmul over a cache of, say,
    #: 1,145 positions (a misaligned row) in a float kernel without tensor cores, 35-100 us a layer on the H100.
    cache_multiple = 64

    def __init__(self, model, slots: int, max_len: int, cuda_graphs: bool | None = None, compile: bool = False,
                 short_slots: int = 0, short_len: int | None = None, prefill_tokens: int = 4096,
                 compile_scope: str = "step"):
        self.model = decoder_model(model)  # the architecture's maths; the cache, graphs and scheduling are ours
        self.device, self.dtype = self.model.device, self.model.dtype
        self.slots, self.max_len = slots, max_len
        # Slots [0, short_slots) hold at most short_len positions, the others max_len: most prompts are short,
        # and a full-attention layer's cache is as long as the slot (the sliding ones keep their window only).
        self.short_slots = short_slots if short_len and short_len < max_len else 0
        self.short_len = short_len if self.short_slots else max_len
        self.n_heads, self.n_kv, self.head_dim = self.model.n_heads, self.model.n_kv, self.model.head_dim
        self.scaling = self.model.scaling
        self.layers = self.model.layers
        self.rope = self.model.rope_tables(max_len)  # cos/sin for every position, per table the layers name
        # Sliding-window layers keep only their last `window` keys, in a ring indexed by position % window;
        # full-attention layers keep the whole slot. For Gemma 3 270M (15 of 18 layers sliding) that is ~4x less.
        # A layer's cache is split into parts, ranges of slots of one length: a full-attention layer has a
        # short part and a long one, a sliding layer one part for every slot.
        self.caches: list[list[dict]] = [self._cache_parts(layer.window) for layer in self.layers]
        # A step's rows reach position `reach` at most (their prompts plus answers): it attends over the first
        # key_span(reach) positions of every part kept whole (a ring, a sliding window's, stays as it is), so its
        # attention reads what its rows wrote, not the whole slot (Qwen2's 24 full-attention layers).
        self.full_lengths = sorted({part["length"] for parts in self.caches for part in parts if not part["ring"]})
        longest = self.full_lengths[-1] if self.full_lengths else 0
        self.key_spans = [n for n in KEY_SPANS if n < longest] + ([longest] if longest else [])
        self._key_ids = torch.arange(longest, device=self.device)
        self.vocab = self.model.vocab
        # decode-step inputs and outputs live in fixed buffers so CUDA graphs can replay them
        self.tokens = torch.zeros(slots, dtype=torch.long, device=self.device)
        self.positions = torch.zeros(slots, dtype=torch.long, device=self.device)
        self.seen = torch.zeros(slots, self.vocab, dtype=torch.bool, device=self.device)
        self.penalty = torch.ones((), dtype=torch.float32, device=self.device)
        self.penalize_prompt = False  # with the penalty (off until set_repetition_penalty passes the config's rule)
        self.banned: torch.Tensor | None = None  # (slots, vocab) once enable_ngram_bans() is called
        self.ban_ngrams = False
        # grounded decoding, once enable_grounding() is called: per slot the bans outside and inside a backtick
        # span (slots, 2, vocab), the tokens that open or close one (slots, vocab), and whether it is in one (0/1)
        self.ground: torch.Tensor | None = None
        self.ground_flips: torch.Tensor | None = None
        self.inside: torch.Tensor | None = None
        self._ground_stage: torch.Tensor | None = None  # on CUDA: page-locked (slots, 3, vocab) for set_grounding
        self._no_tables: tuple[torch.Tensor, ...] | None = None  # a slot without grounding: nothing banned
        self.next_tokens = torch.zeros(slots, dtype=torch.long, device=self.device)
        # sampled answers (set_sampling): per slot its decoding and a generator of its own; greedy slots absent
        self.draws: dict[int, tuple[Sampling, torch.Generator]] = {}
        # Each step's tokens go to one of two host buffers in turn (one step's tokens in flight while the last
        # one's are read), on CUDA page-locked so the copy runs asynchronously, with an event per buffer that
        # says the copy is done. ``external``: recorded inside a captured graph, the event is a node of it.
        cuda = self.device.type == "cuda"
        self._host = [torch.zeros(slots, dtype=torch.long, pin_memory=cuda) for _ in range(2)]
        self._done = [torch.cuda.Event(external=True) for _ in range(2)] if cuda else None
        self._flip = 0
        self._true = torch.ones(slots, dtype=torch.bool, device=self.device)
        self._slot_ids = torch.arange(slots, device=self.device)
        self.cuda_graphs = self.device.type == "cuda" if cuda_graphs is None else cuda_graphs
        # per (batch bucket, key span): twin graphs, the step and its tokens' copy to host buffer 0, and to 1
        self.graphs: dict[tuple[int, int | None], tuple[torch.cuda.CUDAGraph, torch.cuda.CUDAGraph]] = {}
        # one memory pool for every graph (decode and prefill): they never run at the same time and keep their
        # outputs in fixed buffers, so their scratch memory can be shared
        self._pool = torch.cuda.graph_pool_handle() if self.cuda_graphs else None
        # one side stream for every warm-up and capture: cuBLAS keeps a workspace (~32 MB) per stream it ran on
        self._side = torch.cuda.Stream(self.device) if self.cuda_graphs else None
        # Prefills run padded to a (prompts, tokens) bucket, each bucket one CUDA graph: a prefill is then one
        # graph launch instead of ~300 kernel launches and 18 compiled-layer calls from Python (~8 ms of host
        # time against ~1.6 ms on the GPU for one prompt). Buckets hold at most `prefill_tokens` padded tokens
        # (one prompt may be as long as a slot); a larger batch is split.
        self.pad_prefill = self.cuda_graphs
        lengths = [n for n in (64, 128, 256, 512, 1024, 2048, 4096, 8192) if n < max_len] + [max_len]
        widths = [rows for rows in (1, 2, 4, 8, 16, 32) if rows < 2 * slots]
        self.prefill_buckets = sorted((rows, n) for n in lengths for rows in widths
                                      if rows == 1 or rows * n <= prefill_tokens)
        self.prefill_graphs: dict[tuple[int, int], tuple[torch.cuda.CUDAGraph, dict]] = {}
        # A prompt prefix every request shares (the instruction), its keys and values computed once per layer
        # by set_prefix(): prompts that start with it prefill only the rest.
        self.prefix: list[int] = []
        self.prefix_kv: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.warm_up_s: dict[str, float] = {}  # seconds each part of warm_up() took
        # Compiled, a batch of 1 would be a graph of its own (torch.compile specialises sizes of 1): one row
        # runs in the batch-2 graph instead, which costs the same on a GPU and a minute less to compile.
        smallest = 2 if compile else 1
        self.buckets = [b for b in (1, 2, 4, 8, 16, 32, 64, 128, 256) if smallest <= b < slots] + [slots]
        # the longest part kept whole that a step over each bucket's slots reads: a wider span reads no more there
        self._widest = {b: max((part["length"] for parts in self.caches for part in parts
                                if not part["ring"] and part["first"] < b), default=None) for b in self.buckets}
        # torch.compile fuses the step's ~100 small kernels per layer (norms, RoPE, masks) into a few; the
        # CUDA graphs then replay the compiled kernels. Compiling costs minutes once, at warm-up. Scope "step":
        # the whole step is one graph (two variants, either side of the short/long boundary); "layer": the
        # embedding, one layer and the logits are compiled once each, and every sliding layer runs the same code
        # (every full one too). On the H100 the decode graphs compile 7.7x sooner by layer, and a step is ~5 %
        # slower: the step graph fuses across layer boundaries (docs/BENCHMARKS.md).
        if compile_scope not in COMPILE_SCOPES:
            raise ValueError(f"compile_scope must be step or layer, not {compile_scope!r}")
        self.compile_scope = compile_scope if compile else None
        self._decode_step = self._decode
        self._decode_layer_step = self._decode_layer
        if self.compile_scope == "step":
            # Only the batch may vary (_batch_rows marks it): dynamic=True made every size and int the step reads
            # symbolic (each weight's, the cache's, head counts, eps), 2.3x the compile work (docs/BENCHMARKS.md).
            self._decode_step = torch.compile(self._decode)
        elif self.compile_scope == "layer":
            # The same for each piece: the batch is their one symbolic size (_decode marks it on their inputs);
            # dynamic=False, as layers differ in ints (windows, cache lengths) that must not turn symbolic.
            self._decode_layer_step = torch.compile(self._decode_layer, dynamic=False)
            self._decode_in = torch.compile(self._decode_in, dynamic=False)
            self._decode_out = torch.compile(self._decode_out, dynamic=False)
        # prefill shapes vary in prompts x tokens, its two symbolic sizes (_prefill_forward marks them); one layer
        # compiled, run eagerly per layer
        self._prefill_layer_step = (torch.compile(self._prefill_layer, dynamic=False) if compile
                                    else self._prefill_layer)

    # ----------------------------------------------------------------------------------- the KV cache

    def _cache_parts(self, window: int | None) -> list[dict]:
        """One layer's cache, split into parts: ranges of slots [first, stop) of one stored length, each with
        a spare row after its slots (a prefill writes every (prompt, position) of its padded batch, and the
        padding's keys go there: fixed shapes, no host-side selection)."""
        parts: list[dict] = []
        for first, stop, capacity in ((0, self.short_slots, self.short_len), (self.short_slots, self.slots,
                                                                               self.max_len)):
            stored = -(-capacity // self.cache_multiple) * self.cache_multiple  # never-written tail: masked
            length = min(window, stored) if window else stored
            part = parts[-1] if parts else None
            if part is not None and part["length"] == length and part["ring"] == (length < capacity):
                part["stop"] = stop  # same shape as the previous range: one part for both
                continue
            if stop > first:
                parts.append({"first": first, "stop": stop, "length": length, "ring": length < capacity})
        for part in parts:
            part["key_index"] = torch.arange(part["length"], device=self.device)
            # a part kept whole stores one block more than it uses: a decode step's span of it is then always
            # a strided view, whatever its length (a view as long as the tensor is contiguous: torch.compile
            # builds that step a variant of its own)
            stored = part["length"] + (0 if part["ring"] else self.cache_multiple)
            shape = (part["stop"] - part["first"] + 1, self.n_kv, stored, self.head_dim)
            part["k"] = torch.zeros(shape, dtype=self.dtype, device=self.device)
            part["v"] = torch.zeros(shape, dtype=self.dtype, device=self.device)
        return parts

    # ------------------------------------------------------------------------------------- attention

    def _attend(self, q, k, v, mask) -> torch.Tensor:
        # q: (B, H, Tq, D); k, v: (B, KV, Tk, D); mask: bool (B or 1, 1, Tq or 1, Tk), True = may attend.
        # Each group of H / KV query heads shares one key/value head. The group's queries are stacked along the
        # query axis, so both products are plain batched matmuls on the cache as it lies: broadcasting the
        # cache over the group instead makes matmul copy it (transposed) for every head, every step.
        b, heads, tq, d = q.shape
        group = heads // self.n_kv
        q = q.reshape(b, self.n_kv, group * tq, d)
        scores = torch.matmul(q, k.transpose(-1, -2)) * self.scaling  # (B, KV, group * Tq, Tk)
        scores = scores.view(b, self.n_kv, group, tq, -1).masked_fill(~mask.unsqueeze(1), _NEG_INF)
        probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        return torch.matmul(probs.view(b, self.n_kv, group * tq, -1), v).reshape(b, heads, tq, d)

    # ---------------------------------------------------------------------------------------- prefill

    def prefill(self, slot: int, ids: list[int]) -> int:
        """Run a prompt into ``slot``'s cache; returns the first generated token (greedy, penalised)."""
        return self.prefill_many([slot], [ids])[0]

    def _prefill_layer(self, x: torch.Tensor, layer: Layer, cos: torch.Tensor, sin: torch.Tensor,
                       mask: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None):
        """One layer over whole prompts: x (B, n, hidden), mask (B, 1, n, p + n) over the ``p`` positions of
        ``past`` (the shared prefix's keys and values, (1, p, KV, D)) and the prompts' own; returns x and the
        layer's keys and values of every position (B, p + n, KV, D), for the cache. Attention is one fused kernel
        (scaled_dot_product_attention): the scores of a long prompt batch are never materialised."""
        b, n, _ = x.shape
        q, k, v = self.model.qkv(x, layer, cos, sin)  # (B, n, heads, D)
        if past is not None:
            k = torch.cat((past[0].expand(b, -1, -1, -1), k), dim=1)
            v = torch.cat((past[1].expand(b, -1, -1, -1), v), dim=1)
        group = self.n_heads // self.n_kv  # query head h reads key/value head h // group, as transformers
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2).repeat_interleave(group, dim=1),
            v.transpose(1, 2).repeat_interleave(group, dim=1), attn_mask=mask, scale=self.scaling)
        return self.model.finish(x, layer, out.transpose(1, 2).reshape(b, n, -1)), k, v

    def capacity(self, slot: int) -> int:
        """Positions a slot holds: prompt plus answer must stay below it."""
        return self.short_len if slot < self.short_slots else self.max_len

    def _write_targets(self, part: dict, slots: torch.Tensor, ends: torch.Tensor, positions: torch.Tensor):
        """Where a padded prefill's keys go in one cache part: for every (prompt, position), the part's row
        (the spare last row unless the prompt's slot lies in the part and the position is one it keeps: a
        ring keeps the last ``length``), and the entry in that row."""
        spare = part["stop"] - part["first"]
        mine = ((slots >= part["first"]) & (slots < part["stop"]))[:, None]
        keep = mine & (positions[None, :] < ends[:, None]) & (positions[None, :] >= ends[:, None] - part["length"])
        return torch.where(keep, slots[:, None] - part["first"], spare), positions % part["length"]

    def _prefill_forward(self, tokens: torch.Tensor, slots: torch.Tensor, ends: torch.Tensor, start: int = 0,
                         layer_kv: list | None = None) -> torch.Tensor:
        """Prompts ``tokens`` (B, n), right-padded, into the caches of ``slots`` (B,) (a slot outside
        [0, slots) is padding: its keys go to the spare rows); returns each prompt's last hidden state.
        ``start``: the prompts follow the shared prefix (its length, or 0): ``tokens`` are what comes after it,
        ``ends`` count it, and the prefix's keys are attended to and copied into the slots. ``layer_kv``: a
        list to append each layer's keys and values to (for set_prefix)."""
        b, n = tokens.shape
        queries = torch.arange(start, start + n, device=self.device)
        keys = torch.arange(start + n, device=self.device)  # the prefix's positions, then the prompts'
        real_keys = (keys[None, :] < ends[:, None])[:, None, None, :]  # (B, 1, 1, start + n): padding is no key
        causal = keys[None, :] <= queries[:, None]
        itself = keys[None, :] == queries[:, None]
        masks, targets = {}, {}
        for layer, parts in zip(self.layers, self.caches):
            if (window := layer.window) not in masks:  # a padding query may see only itself: never all -inf (NaN)
                mask = causal if window is None else causal & (keys[None, :] > queries[:, None] - window)
                masks[window] = (mask & real_keys) | itself
            for part in parts:
                if (key := (part["first"], part["length"])) not in targets:
                    targets[key] = self._write_targets(part, slots, ends, keys)
        # compiled for the prompts that follow the prefix (all of them, in practice); the prefix itself and the
        # rare prompt that does not start with it run eagerly rather than compile a second variant while serving
        run = self._prefill_layer_step if start == len(self.prefix) and layer_kv is None else self._prefill_layer
        # the compiled layer's two symbolic sizes: prompts and tokens (of x, the rope's rows, the masks' axes)
        rope = {kind: (_varying(cos[start:start + n], 0), _varying(sin[start:start + n], 0))
                for kind, (cos, sin) in self.rope.items()}
        masks = {window: _varying(mask, 0, 2, 3) for window, mask in masks.items()}
        x = self.model.embed(tokens)  # (B, n, hidden)
        for i, (layer, parts) in enumerate(zip(self.layers, self.caches)):
            x, k, v = run(_varying(x, 0, 1), layer, *rope[layer.rope], masks[layer.window],
                          self.prefix_kv[i] if start else None)
            if layer_kv is not None:
                layer_kv.append((k, v))
            for part in parts:
                row, entry = targets[(part["first"], part["length"])]
                part["k"][row, :, entry] = k
                part["v"][row, :, entry] = v
        return x[torch.arange(b, device=self.device), ends - 1 - start]  # (B, hidden)

    def set_prefix(self, ids: list[int]) -> None:
        """Compute the keys and values of a prompt prefix every request shares (the instruction) once: from
        now on a prompt that starts with these ids prefills only what follows them, and its slot's cache gets
        the prefix's keys copied in. Call before :meth:`warm_up` (the prefill graphs are captured for it)."""
        if self.prefill_graphs:
            raise RuntimeError("set the prefix before the prefill graphs are captured")
        self.prefix, self.prefix_kv = [], []
        # a multiple of 16 positions: with a bucket's length (a multiple of 64) the attention's key axis stays
        # aligned as the fused attention kernels want it (else its mask is padded, a copy per layer)
        ids = ids[:len(ids) // 16 * 16]
        if not ids or len(ids) >= self.short_len // 2:  # nothing shared, or too little left for the prompt
            return
        layer_kv: list = []
        with torch.inference_mode():
            tokens, slots, ends = (t.to(self.device) for t in self._padded_inputs((1, len(ids)), [], [ids]))
            self._prefill_forward(tokens, slots, ends, layer_kv=layer_kv)  # its own keys go to the spare rows
        self.prefix, self.prefix_kv = list(ids), [(k.clone(), v.clone()) for k, v in layer_kv]
        # a prefilled bucket's positions end after the prefix: no bucket may reach past the slot
        self.prefill_buckets = [(rows, min(n, self.max_len - len(ids))) for rows, n in self.prefill_buckets]
        self.prefill_buckets = sorted(set(self.prefill_buckets))

    def prefill_bucket(self, prompts: int, longest: int) -> tuple[int, int] | None:
        """The smallest prefill bucket (prompts, tokens) that holds a batch; None if none does."""
        return next(((rows, n) for rows, n in self.prefill_buckets if rows >= prompts and n >= longest), None)

    def _padded_inputs(self, shape: tuple[int, int], slots: list[int], prompts: list[list[int]], start: int = 0):
        """``_prefill_forward``'s inputs (on the host) for prompts (what follows the first ``start`` tokens)
        padded to ``shape`` (rows, tokens): rows past the prompts are padding, with no slot (their keys go to the
        spare rows)."""
        rows, n = shape
        # one call into torch for the whole batch, not one per prompt (each lets the GIL go: set_groundings)
        tokens = torch.tensor([ids + [0] * (n - len(ids)) for ids in prompts] + [[0] * n] * (rows - len(prompts)),
                              dtype=torch.long).view(rows, n)
        slot_ids = torch.tensor(slots + [self.slots] * (rows - len(slots)))
        ends = torch.tensor([start + len(ids) for ids in prompts] + [start + 1] * (rows - len(prompts)))
        return tokens, slot_ids, ends

    def _prefill_last(self, shape: tuple[int, int], slots: list[int], prompts: list[list[int]],
                      start: int) -> torch.Tensor:
        """Each prompt's last hidden state (``prompts``: what follows the first ``start`` tokens), the batch
        padded to ``shape``: a bucket's CUDA graph replayed where there is one, else the forward run on the
        padded batch."""
        inputs = self._padded_inputs(shape, slots, prompts, start)
        graphed = self.pad_prefill and self.cuda_graphs and shape in self.prefill_buckets and start == len(self.prefix)
        if not graphed:
            return self._prefill_forward(*(t.to(self.device) for t in inputs), start=start)[:len(slots)]
        if shape not in self.prefill_graphs:
            self._capture_prefill(shape)
        graph, static = self.prefill_graphs[shape]
        for name, value in zip(("tokens", "slots", "ends"), inputs):
            static[name].copy_(value, non_blocking=True)
        graph.replay()
        return static["last"][:len(slots)]

    @torch.inference_mode()
    def prefill_many(self, slots: list[int], prompts: list[list[int]],
                     grounding: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None] | None = None,
                     resumed: list[tuple[int, frozenset[int]]] | None = None) -> list[int]:
        """Run several prompts into their slots in one forward pass (right-padded to the longest; padding is
        masked out and never cached); returns each slot's first generated token. ``grounding``: per prompt, its
        answer's grounded-decoding tables (:meth:`set_grounding`), or None for none. ``resumed``: per prompt,
        how many of its last tokens are an answer's own, kept (seen by the repetition penalty like the ones it
        generates), and the tokens its first new one may not be (:mod:`mafioso.worker.retry`)."""
        grounding = grounding or [None] * len(prompts)
        resumed = resumed or [(0, frozenset())] * len(prompts)
        lengths = [len(ids) for ids in prompts]
        for slot, length in zip(slots, lengths):
            if length >= self.capacity(slot):
                raise ValueError(f"prompt of {length} tokens does not fit slot {slot} ({self.capacity(slot)})")
        shared = [len(ids) > len(self.prefix) and ids[:len(self.prefix)] == self.prefix for ids in prompts]
        if len(set(shared)) > 1:  # prompts with and without the shared prefix: one batch each
            firsts = {}
            for flag in (True, False):
                rows = [i for i, s in enumerate(shared) if s == flag]
                firsts.update(zip(rows, self.prefill_many([slots[i] for i in rows], [prompts[i] for i in rows],
                                                          [grounding[i] for i in rows], [resumed[i] for i in rows])))
            return [firsts[i] for i in range(len(prompts))]
        start = len(self.prefix) if shared[0] else 0
        rest = [ids[start:] for ids in prompts]
        n = max(map(len, rest))
        padded = self.pad_prefill and start == len(self.prefix)  # the buckets follow the prefix
        bucket = self.prefill_bucket(len(prompts), n) if padded else None
        if padded and bucket is None and len(prompts) > 1:  # more padded tokens than any bucket
            half = len(prompts) // 2
            return (self.prefill_many(slots[:half], prompts[:half], grounding[:half], resumed[:half])
                    + self.prefill_many(slots[half:], prompts[half:], grounding[half:], resumed[half:]))
        last = self._prefill_last(bucket or (len(prompts), n), slots, rest, start)
        rows = torch.tensor(slots, device=self.device)
        ends = torch.tensor(lengths, device=self.device)
        self.seen[rows] = False
        if self.ban_ngrams:
            self.banned[rows] = False
        self.set_groundings(slots, grounding)
        seen = [ids if self.penalize_prompt else ids[len(ids) - kept:] for ids, (kept, _) in zip(prompts, resumed)]
        if any(seen):
            flat_slots = [slot for slot, ids in zip(slots, seen) for _ in ids]
            flat_tokens = [token for ids in seen for token in ids]
            self.seen[torch.tensor(flat_slots, device=self.device), torch.tensor(flat_tokens, device=self.device)] \
                = True
        logits = penalize(self.model.logits(last), self.seen[rows], self.penalty)
        if (banned := self._banned(rows)) is not None:
            logits = logits.masked_fill(banned, _NEG_INF)
        if any(ban for _, ban in resumed):
            first_bans = [(row, token) for row, (_, ban) in enumerate(resumed) for token in ban]
            logits[[row for row, _ in first_bans], [token for _, token in first_bans]] = _NEG_INF
        first = self._pick(slots, logits, logits.argmax(-1))
        self._ground_step(rows, first)
        self.seen[rows, first] = True
        self.tokens[rows] = first
        self.positions[rows] = ends
        return first.tolist()

    # ----------------------------------------------------------------------------------------- decode

    def _batch_rows(self, b: int) -> torch.Tensor:
        """The indices of slots [0, b), the decode step's argument: its length is the one size torch.compile
        keeps symbolic, so every bucket on one side of the short/long boundary runs the same compiled step."""
        return _varying(self._slot_ids[:b], 0)

    def _span_keys(self, span: int | None) -> dict[int, torch.Tensor] | None:
        """The key positions a step with key span ``span`` attends over, per length of a part kept whole (its
        first min(span, length)); their lengths are sizes torch.compile keeps symbolic. None: every position."""
        if span is None:
            return None
        return {length: _varying(self._key_ids[:min(span, length)], 0) for length in self.full_lengths}

    def _decode(self, rows: torch.Tensor, keys: dict[int, torch.Tensor] | None = None) -> None:
        """One decode step for slots [0, b), ``rows`` their indices (:meth:`_batch_rows`), attending over
        ``keys`` (:meth:`_span_keys`): reads ``tokens``/``positions``, writes ``next_tokens``."""
        b = rows.shape[0]
        positions = _varying(self.positions[:b], 0)  # scope "layer": each compiled piece's one symbolic size
        x, rope = self._decode_in(_varying(self.tokens[:b], 0), positions)
        for layer, parts in zip(self.layers, self.caches):
            cos, sin = rope[layer.rope]
            x = self._decode_layer_step(_varying(x, 0), layer, parts, _varying(cos, 0), _varying(sin, 0), positions,
                                        keys)
        self._decode_out(_varying(x, 0))

    def _decode_in(self, tokens: torch.Tensor, positions: torch.Tensor):
        """The step's embeddings (b, hidden) and RoPE cos/sin per layer kind at the rows' positions."""
        x = self.model.embed(tokens)
        return x, {kind: (cos[positions], sin[positions]) for kind, (cos, sin) in self.rope.items()}

    def _decode_layer(self, x: torch.Tensor, layer: Layer, parts: list[dict], cos: torch.Tensor, sin: torch.Tensor,
                      positions: torch.Tensor, keys: dict[int, torch.Tensor] | None = None) -> torch.Tensor:
        """One layer of a decode step for slots [0, b) (b = x's rows): writes their keys and values into the
        layer's cache at ``positions`` and attends over it (a part kept whole: over ``keys`` of its length)."""
        b = x.shape[0]
        rows = torch.arange(b, device=self.device)
        q, k, v = self.model.qkv(x, layer, cos, sin)  # (b, heads, D)
        outs = []
        for part in parts:  # slots [first, stop) of the step's [0, b)
            # b <= slots: a part that reaches the last slot ends at b (a Min(b, stop) the compiler need not carry;
            # a restart's cached graph once narrowed it to b <= 7 of 8 slots, and recompiled for 8)
            first, stop = part["first"], b if part["stop"] >= self.slots else min(b, part["stop"])
            if first >= stop:
                break
            at = positions[first:stop]
            part["k"][rows[:stop - first], :, at % part["length"]] = k[first:stop]
            part["v"][rows[:stop - first], :, at % part["length"]] = v[first:stop]
            # the rows' positions all lie within the span
            key_index = keys[part["length"]] if keys is not None and not part["ring"] else part["key_index"]
            span = key_index.shape[0]
            k_cache, v_cache = part["k"][:stop - first, :, :span], part["v"][:stop - first, :, :span]
            mask = key_index[None, :] <= at[:, None]  # written entries only
            if part["ring"]:  # once the ring is full every entry is one of the last `window` positions
                mask = mask | (at[:, None] >= part["length"] - 1)
            elif layer.window:
                mask = mask & (key_index[None, :] > at[:, None] - layer.window)
            outs.append(self._attend(q[first:stop, :, None], k_cache, v_cache, mask[:, None, None, :]))
        out = outs[0] if len(outs) == 1 else torch.cat(outs)
        return self.model.finish(x, layer, out.reshape(b, -1))

    def _decode_out(self, x: torch.Tensor) -> None:
        """The step's greedy tokens for slots [0, b) from the last layer's x: penalised, banned, the first
        maximum; they become the next step's input."""
        b = x.shape[0]
        logits = penalize(self.model.logits(x), self.seen[:b], self.penalty)
        rows = torch.arange(b, device=self.device)
        if (banned := self._banned(rows)) is not None:  # which bans apply is fixed when the graphs are captured
            logits = logits.masked_fill(banned, _NEG_INF)
        nxt = chunked_argmax(logits)
        if self.draws:  # never in a CUDA graph or a compiled step (samples)
            nxt = self._pick(range(b), logits, nxt)
        self._ground_step(rows, nxt)
        self.next_tokens[:b] = nxt
        self.seen[rows, nxt] = self._true[:b]  # a device tensor: no host copy
        self.tokens[:b] = nxt
        self.positions[:b] = torch.clamp(self.positions[:b] + 1, max=self.max_len - 1)

    @property
    def samples(self) -> bool:
        """Whether a sampled answer may take a slot: the step runs eagerly (no CUDA graph, nothing compiled), so
        its token can be drawn on the host, after the step's penalty and bans (on a CPU)."""
        return not self.cuda_graphs and self.compile_scope is None

    def set_sampling(self, slot: int, sampling: Sampling) -> None:
        """How the answer in ``slot`` picks its tokens from now on: greedily, or each drawn by
        :meth:`Sampling.draw` from a generator of its own (seeded as the plain engine seeds it, so a seeded
        answer is the same on either path and whatever shares its step)."""
        if sampling.greedy:
            self.draws.pop(slot, None)
        elif not self.samples:
            raise ValueError("this decoder's steps run in CUDA graphs or compiled: it decodes greedily only")
        else:
            self.draws[slot] = (sampling, sampling.generator(self.device))

    def _pick(self, slots, logits: torch.Tensor, greedy: torch.Tensor) -> torch.Tensor:
        """The step's tokens: each row's greedy pick, or its slot's draw where the slot samples."""
        for row, slot in enumerate(slots):
            if (draw := self.draws.get(slot)) is not None:
                sampling, generator = draw
                greedy[row] = sampling.draw(logits[row], generator)
        return greedy

    def _banned(self, rows: torch.Tensor) -> torch.Tensor | None:
        """(len(rows), vocab) bool: the tokens each slot of ``rows`` may not take next (grounded decoding's mask
        for where its answer is, the host's n-gram bans), or None when no ban is enabled."""
        banned = self.ground[rows, self.inside[rows]] if self.ground is not None else None
        if self.ban_ngrams:
            banned = self.banned[rows] if banned is None else banned | self.banned[rows]
        return banned

    def _ground_step(self, rows: torch.Tensor, tokens: torch.Tensor) -> None:
        """Each slot of ``rows`` took its token of ``tokens``: a span-flipping token moves it in or out of a span."""
        if self.ground is not None:
            self.inside[rows] = self.inside[rows] ^ self.ground_flips[rows, tokens].long()

    def bucket(self, active: int) -> int:
        """The smallest captured batch size that covers slots [0, active)."""
        return next(b for b in self.buckets if b >= active)

    def key_span(self, reach: int | None) -> int | None:
        """The smallest key span that covers positions [0, reach) (reach None: the widest, every position; None
        where every part is a ring)."""
        if not self.key_spans:
            return None
        return next((n for n in self.key_spans if reach is not None and n >= reach), self.key_spans[-1])

    def _graph_span(self, b: int, span: int | None) -> int | None:
        """``span`` as a step over slots [0, b) reads it: within the short slots, a span past their length reads
        what their whole length does (one graph for both)."""
        return span if span is None or self._widest[b] is None else min(span, self._widest[b])

    def _publish(self, b: int, flip: int) -> None:
        """After a step over slots [0, b): copy its tokens to host buffer ``flip`` and record that buffer's event
        (on CUDA the copy is asynchronous; inside a captured step, both are nodes of its graph)."""
        self._host[flip][:b].copy_(self.next_tokens[:b], non_blocking=True)
        if self._done is not None:
            self._done[flip].record()

    def _run(self, b: int, span: int | None) -> int:
        """Run one step over slots [0, b) with key span ``span`` and publish its tokens; returns the host buffer
        they go to. With CUDA graphs that is one replay: the launch gives the GIL up once, not once per CUDA
        call (replay, copy, event; each a wait for the request threads at 64 rows, docs/BENCHMARKS.md)."""
        span = self._graph_span(b, span)
        flip, self._flip = self._flip, self._flip ^ 1
        if not self.cuda_graphs:
            self._decode_step(self._batch_rows(b), self._span_keys(span))
            self._publish(b, flip)
        else:
            if (b, span) not in self.graphs:
                self._capture(b, span)
            self.graphs[b, span][flip].replay()
        return flip

    @torch.inference_mode()
    def step(self, active: int, reach: int | None = None) -> torch.Tensor:
        """One greedy decode step for slots [0, bucket(active)), whose rows lie before position ``reach`` (None:
        anywhere); returns their next tokens (on device)."""
        b = self.bucket(active)
        self._run(b, self.key_span(reach))
        return self.next_tokens[:b]

    @torch.inference_mode()
    def launch(self, active: int, reach: int | None = None) -> tuple[torch.Tensor, int, torch.cuda.Event | None]:
        """Start one decode step for slots [0, bucket(active)) (rows before position ``reach``, as for
        :meth:`step`) and return a handle for :meth:`collect`. On a GPU nothing waits: the tokens come back to
        the host asynchronously, so the caller may launch the next step (its inputs are already on the device)
        before it reads this one's."""
        b = self.bucket(active)
        flip = self._run(b, self.key_span(reach))
        return self._host[flip], b, self._done[flip] if self._done is not None else None

    @staticmethod
    def collect(handle: tuple[torch.Tensor, int, torch.cuda.Event | None]) -> list[int]:
        """The tokens of a launched step (waits for it, without holding the GIL)."""
        tokens, b, done = handle
        if done is not None:
            done.synchronize()
        return tokens.tolist()[:b]

    def _record(self, run, warm: bool = True):
        """Capture ``run()`` in a CUDA graph in the shared pool; returns the graph and what ``run`` returned.
        Warm-up runs first on the side stream (required before capture; ``warm=False``: ``run`` just ran them).
        cuBLAS's workspace is dropped before and after, so the graph's lives in the graph pool rather than a
        workspace kept per stream (inductor's CUDA-graph trees do the same)."""
        stream = self._side
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2 if warm else 0):
                run()
        torch.cuda.current_stream().wait_stream(stream)
        _clear_cublas_workspaces()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self._pool, stream=stream):
            out = run()
        _clear_cublas_workspaces()
        return graph, out

    def _capture(self, b: int, span: int | None) -> None:
        """Capture the twin graphs of a step over slots [0, b) with key span ``span`` (see :meth:`_run`)."""
        # restore the state each capture's runs touched, so capturing never changes what a live slot generates
        saved = (self.tokens.clone(), self.positions.clone(), self.seen[:b].clone(),
                 self.inside.clone() if self.inside is not None else None)

        def run(flip: int) -> None:
            self._decode_step(self._batch_rows(b), self._span_keys(span))
            self._publish(b, flip)

        twins = []
        for flip in (0, 1):  # the twins run the same kernels: the second needs no warm-up of its own
            twins.append(self._record(lambda flip=flip: run(flip), warm=flip == 0)[0])
            self.tokens.copy_(saved[0])
            self.positions.copy_(saved[1])
            self.seen[:b].copy_(saved[2])
            if saved[3] is not None:
                self.inside.copy_(saved[3])
        self.graphs[b, span] = tuple(twins)

    def _capture_prefill(self, bucket: tuple[int, int]) -> None:
        # the inputs name no slot while capturing: every key goes to the spare rows, no live slot is touched
        start = len(self.prefix)
        inputs = (t.to(self.device) for t in self._padded_inputs(bucket, [], [], start))
        static = dict(zip(("tokens", "slots", "ends"), inputs))
        graph, static["last"] = self._record(lambda: self._prefill_forward(static["tokens"], static["slots"],
                                                                           static["ends"], start))
        self.prefill_graphs[bucket] = graph, static

    def set_repetition_penalty(self, penalty: float, *, penalize_prompt: bool) -> None:
        """The repetition penalty (1.0 = off), as transformers applies it; with ``penalize_prompt=False``
        only generated tokens count as seen (transformers' ``prompt_ignore_length``). No default: the
        config's (``GenerationConfig.penalize_prompt``) is the one rule, passed in by the engine."""
        self.penalty.fill_(penalty)
        self.penalize_prompt = penalize_prompt

    def enable_ngram_bans(self) -> None:
        """Apply :meth:`set_bans` in every decode step from now on (call before :meth:`warm_up`)."""
        if self.graphs:
            raise RuntimeError("enable n-gram bans before the decode graphs are captured")
        self.banned = torch.zeros(self.slots, self.vocab, dtype=torch.bool, device=self.device)
        self.ban_ngrams = True

    def set_bans(self, lift: list[tuple[int, int]], ban: list[tuple[int, int]]) -> None:
        """Forbid (slot, token) pairs in the next decode steps, and allow earlier ones again (a slot's bans
        are also lifted when a new prompt is prefilled into it)."""
        if not self.ban_ngrams:
            return
        for pairs, value in ((lift, False), (ban, True)):
            if pairs:
                slots, tokens = zip(*pairs)
                self.banned[list(slots), list(tokens)] = value

    def enable_grounding(self) -> None:
        """Apply each slot's grounded-decoding tables (:meth:`set_grounding`) in every step from now on (call
        before :meth:`warm_up`)."""
        if self.graphs:
            raise RuntimeError("enable grounding before the decode graphs are captured")
        self.ground = torch.zeros(self.slots, 2, self.vocab, dtype=torch.bool, device=self.device)
        self.ground_flips = torch.zeros(self.slots, self.vocab, dtype=torch.bool, device=self.device)
        self.inside = torch.zeros(self.slots, dtype=torch.long, device=self.device)
        if self.device.type == "cuda":  # page-locked staging for a prefill's slots: set_groundings' copies never block
            self._ground_stage = torch.zeros(self.slots, 3, self.vocab, dtype=torch.bool, pin_memory=True)

    def set_grounding(self, slot: int, tables: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None) -> None:
        """Ground ``slot``'s answer from its start: ``tables`` = (bans outside a backtick span, bans inside one,
        tokens that open or close a span), each (vocab,) bool on the host
        (:meth:`mafioso.worker.grounded_decoding.AnswerGrounding.tables`); None: nothing banned."""
        self.set_groundings([slot], [tables])

    def set_groundings(self, slots: list[int],
                       tables: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None]) -> None:
        """:meth:`set_grounding` for several slots at once, in a few calls into torch whatever their number: each
        call lets the GIL go, and at 64 concurrent requests taking it back means waiting for a request thread."""
        if self.ground is None or not slots:
            return
        if self._no_tables is None:
            self._no_tables = (torch.zeros(self.vocab, dtype=torch.bool),) * 3
        stacked = torch.stack([table for three in tables for table in (three or self._no_tables)])
        stacked = stacked.view(len(slots), 3, self.vocab)
        rows = torch.tensor(slots, device=self.device)
        self.inside[rows] = 0
        if self._ground_stage is not None:
            # the host's tables go through page-locked staging, asynchronously: a plain copy from pageable memory
            # would wait for the decode step in flight. The prefill that follows reads its first tokens back (a
            # sync), so the copy has finished before the staging is written again.
            stage = self._ground_stage[:len(slots)]
            stage.copy_(stacked)
            stacked = stage.to(self.device, non_blocking=True)
        self.ground[rows] = stacked[:, :2]
        self.ground_flips[rows] = stacked[:, 2]

    def warm_up(self) -> None:
        """Compile the prefill and capture every graph now (decode and prefill buckets), so no request pays
        for it; ``warm_up_s`` says how long each part took. If the prefill does not compile, it runs eagerly
        (slower, same maths) rather than failing the engine."""
        started = time.perf_counter()

        def took(part: str) -> None:
            nonlocal started
            self.warm_up_s[part] = round(time.perf_counter() - started, 1)
            started = time.perf_counter()

        if self._prefill_layer_step != self._prefill_layer:  # compiled (==: each access makes a new bound method)
            try:  # one prompt and two: torch.compile specialises a size of 1, so both get compiled here; the
                # prompts name no slot (their keys go to the spare rows)
                with torch.inference_mode():
                    start = len(self.prefix)
                    for rows in range(1, min(2, self.slots) + 1):
                        inputs = self._padded_inputs((rows, min(64, self.max_len - start)), [], [], start)
                        self._prefill_forward(*(t.to(self.device) for t in inputs), start=start)
            except Exception as exc:  # noqa: BLE001 - any compiler failure: fall back to the eager layer
                log.warning("torch.compile of the prefill failed, prefill runs eagerly: %s", exc)
                self._prefill_layer_step = self._prefill_layer
            took("prefill_compile")
        if self.cuda_graphs:
            with torch.inference_mode():
                for b in self.buckets:
                    for span in self.key_spans[::-1] or [None]:  # widest first: there the parts' spans differ
                        span = self._graph_span(b, span)
                        if (b, span) not in self.graphs:
                            self._capture(b, span)  # the first capture of each compiled variant compiles it
                took("decode_graphs")
                try:
                    for bucket in self.prefill_buckets:
                        if bucket not in self.prefill_graphs:
                            self._capture_prefill(bucket)
                except Exception as exc:  # noqa: BLE001 - serve with the unpadded prefill rather than not at all
                    log.warning("capturing the prefill graphs failed, prefill runs unpadded: %s", exc)
                    self.prefill_graphs.clear()
                    self.pad_prefill = False
                took("prefill_graphs")

    @property
    def cache_bytes(self) -> int:
        """Memory held by the KV cache."""
        return sum(2 * part["k"].numel() * part["k"].element_size() for parts in self.caches for part in parts)

