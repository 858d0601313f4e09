"""The fast engine's tuning, as one value: :class:`DecoderSettings`, built once from the config and passed in.

    settings = DecoderSettings.of(cfg, gen, "cuda")          # what the worker runs
    settings = dataclasses.replace(settings, long_slots=0)    # what a bench tries instead

Benches and tests pass a different value; nothing patches a class for the whole process.
"""

from __future__ import annotations

from dataclasses import dataclass

from mafioso import prompts
from mafioso.core.config import GenerationConfig, WorkerConfig

__all__ = ["CPU_ADMIT_EVERY", "CPU_PREFILL_TOKENS", "CPU_SLOTS", "FACTS_TOKENS", "GPU_ADMIT_EVERY", "GPU_LONG_SLOTS",
           "GPU_PREFILL_TOKENS", "GPU_SWITCH_INTERVAL_S", "DecoderSettings", "slot_length"]

#: The most tokens the facts sheet adds to a prompt: its bound (prompts.FACTS_MAX_TOKENS, an estimate up to
#: ~1/6 under the real count) and its "### FACTS:" header. Slots grow by this, so code that fitted before
#: the sheet still fits.
FACTS_TOKENS = prompts.FACTS_MAX_TOKENS * 5 // 4 + 8
#: Slots on a CPU: throughput there stops growing past ~16 rows (docs/BENCHMARKS.md), the cache would not.
CPU_SLOTS = 16
#: On the GPU, the default slots for prompts longer than ``short_prompt_tokens``; the other slots keep a
#: full-attention cache for short prompts only (~1,000 tokens, ~3,000 characters of code, plus the facts sheet):
#: 8 long slots of 64 make the KV cache ~0.8 GB instead of 1.05, and served as fast on the H100
#: (docs/BENCHMARKS.md, "Short and long slots"; measured before the facts sheet made every slot ~400 tokens longer).
GPU_LONG_SLOTS = 8
#: While rows decode, waiting prompts are admitted (and prefilled, stalling every running row) at most once every
#: this many steps, so prefills come in groups rather than one per arriving request. A prefill cost ~10 decode
#: steps on the GPU before prefill graphs (~3 on a CPU; docs/BENCHMARKS.md).
GPU_ADMIT_EVERY = 16
CPU_ADMIT_EVERY = 4
#: On the GPU, Python's GIL switch interval (sys.setswitchinterval) while the engine serves. The decode thread
#: lets go of the GIL at every wait for the device; with Python's 5 ms it may wait up to that long to get it back
#: while a request thread renders a prompt or checks an answer, and the device idles. A stand-in 1.1 ms step with
#: lookahead, one request thread busy, a 2-core CPU (bench/bench_host.py --simulate): 1.71 ms a step at 5 ms,
#: 1.50-1.64 at 0.5 ms (docs/BENCHMARKS.md).
GPU_SWITCH_INTERVAL_S = 0.0005
#: Most padded tokens in one prefill batch on the GPU (16 prompts of 256 tokens): a batch is one graph launch there.
GPU_PREFILL_TOKENS = 4096
#: On a CPU every prompt is prefilled on its own (0): attention over a padded batch rounds a prompt's keys in their
#: last bits unlike attention over the prompt alone, and greedy answers then hung on what was prefilled with them
#: (4 of 20 Qwen answers the same alone and in a batch of twenty, 20 of 20 prefilled one by one); a batch saved
#: no time there (the twenty: 33.4 s batched, 34.6 s one by one, docs/BENCHMARKS.md).
CPU_PREFILL_TOKENS = 0


def slot_length(cfg: WorkerConfig, gen: GenerationConfig) -> int:
    """KV-cache length per slot: the instruction plus code of ``max_input_chars`` (about 3 characters a token)
    plus its facts sheet, rounded up to 512, plus a full answer. Longer prompts still work, on the plain engine."""
    return -(-(cfg.max_input_chars // 3 + 256 + FACTS_TOKENS) // 512) * 512 + gen.max_new_tokens


@dataclass(frozen=True)
class DecoderSettings:
    """How the fast engine decodes: its KV-cache slots, compilation and scheduling."""

    #: KV-cache slots: requests decoded at once.
    slots: int
    #: Tokens per slot (prompt + answer); longer prompts take the plain engine.
    max_len: int
    #: CUDA: torch.compile the decode step (``compile_scope``: the whole ``step`` or each ``layer``).
    compile: bool = False
    compile_scope: str = "step"
    #: Launch each decode step before reading the last one's tokens (None: with CUDA graphs). Off with n-gram
    #: bans, which the host must compute from a step's token before the next step runs.
    lookahead: bool | None = None
    #: Slots for prompts longer than ``short_prompt_tokens``; the other slots keep a cache for short prompts
    #: only. A long prompt waits for a long slot; a short one takes a long slot only when every short slot is
    #: busy. None (or 0, or ``slots``): every slot long.
    long_slots: int | None = None
    short_prompt_tokens: int = 1024 + FACTS_TOKENS
    #: Admit waiting prompts at most once every this many decode steps. None: GPU_ADMIT_EVERY with CUDA graphs,
    #: CPU_ADMIT_EVERY without.
    admit_every: int | None = None
    #: Most padded tokens in one prefill batch (rows x longest prompt; 0: each prompt alone). On the GPU the
    #: decoder pads a batch further, to its prefill graph's bucket, and splits one that no bucket holds.
    prefill_tokens: int = GPU_PREFILL_TOKENS
    #: Compute the keys of the instruction every prompt starts with once (prompts.shared_prefix_ids): a prefill
    #: then runs only the request and the code, ~1/3 of a typical prompt's tokens (docs/BENCHMARKS.md).
    share_prefix: bool = True
    #: Python's GIL switch interval from the engine's start on, for the whole process (None: GPU_SWITCH_INTERVAL_S
    #: with CUDA graphs; Python's own, 5 ms, without).
    switch_interval_s: float | None = None

    def __post_init__(self):
        if self.slots < 1 or self.max_len < 2:
            raise ValueError(f"DecoderSettings needs a slot and two tokens a slot, not {self.slots}, {self.max_len}")
        if self.admit_every is not None and self.admit_every < 1:
            raise ValueError(f"admit_every must be at least 1, not {self.admit_every}")
        if self.switch_interval_s is not None and self.switch_interval_s <= 0:
            raise ValueError(f"switch_interval_s must be above 0, not {self.switch_interval_s}")

    @classmethod
    def of(cls, cfg: WorkerConfig, gen: GenerationConfig, device: str) -> DecoderSettings:
        """What the worker runs for ``cfg`` and ``gen`` on ``device`` ("cuda" or "cpu")."""
        cuda = device == "cuda"
        return cls(slots=cfg.max_batch_size if cuda else min(cfg.max_batch_size, CPU_SLOTS),
                   max_len=slot_length(cfg, gen), compile=cfg.compile_decode and cuda,
                   compile_scope=cfg.compile_scope, long_slots=GPU_LONG_SLOTS if cuda else None,
                   prefill_tokens=GPU_PREFILL_TOKENS if cuda else CPU_PREFILL_TOKENS)

    def slot_split(self, gen: GenerationConfig) -> dict:
        """The decoder's ``short_slots`` and ``short_len``."""
        long = self.long_slots
        short = self.slots - long if long is not None and 0 < long < self.slots else 0
        return {"short_slots": short, "short_len": self.short_prompt_tokens + gen.max_new_tokens + 1}
