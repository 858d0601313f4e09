"""Which dtype a CPU serves answers in, chosen by measuring it (``MAFIOSO_DTYPE=auto`` on a CPU, issue 21).

oneDNN says "bf16 supported" on CPUs where bf16 decodes at half the speed of fp32, so the choice comes from a
short timing at load instead: a few matmuls shaped like one decode step of the model (a few rows × an MLP-sized
weight, and a slice of the LM head, which is most of the bytes a token reads), in fp32 and bf16, the two dtypes
interleaved so that other load on the machine hits both alike, best of a few. bf16 wins only when clearly faster
(:data:`SPEEDUP`). The verdict is cached per machine in ``cache_dir()/cpu-dtype.json``, keyed by the CPU model,
its flags, the torch version, the thread count and the model's width: a second start does not measure again.

    dtype = cpu_dtype(hidden=640, vocab=262144)   # torch.bfloat16 or torch.float32
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from mafioso.core.base_model import cache_dir

__all__ = ["SPEEDUP", "Timings", "choose", "cpu_dtype", "machine_key", "measure"]

log = logging.getLogger(__name__)

#: bf16 must be at least this much faster than fp32 to be chosen (its answers differ a little from fp32's).
SPEEDUP = 1.15
CACHE_FILE = "cpu-dtype.json"
HEAD_ROWS = 16384  # LM head rows timed: 42 MB in fp32 at width 640, past the caches like the real 262,144 rows


@dataclass(frozen=True)
class Timings:
    """Seconds for the measured decode-shaped matmuls, summed over the shapes (each shape's best run)."""

    float32: float
    bfloat16: float


def choose(timings: Timings) -> torch.dtype:
    """bf16 when it is at least :data:`SPEEDUP` times faster than fp32, else fp32."""
    return torch.bfloat16 if timings.float32 >= SPEEDUP * timings.bfloat16 else torch.float32


def _cpu_facts() -> tuple[str, str]:
    """The CPU's model name and flags (``/proc/cpuinfo`` on Linux; elsewhere what ``platform`` tells)."""
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        lines = []
    found = {}
    for line in lines:
        name, _, value = line.partition(":")
        found.setdefault(name.strip(), value.strip())
    return found.get("model name") or platform.processor() or platform.machine(), found.get("flags", "")


def machine_key(hidden: int) -> str:
    """What the verdict depends on, hashed: CPU model and flags, torch version, thread count, model width."""
    name, flags = _cpu_facts()
    facts = [name, flags, torch.__version__, str(torch.get_num_threads()), str(hidden)]
    return hashlib.sha256("\n".join(facts).encode()).hexdigest()[:24]


def measure(hidden: int, vocab: int, rounds: int = 7, budget_s: float = 0.35) -> Timings:
    """Time decode-shaped matmuls in fp32 and bf16 (warm-up, then the best of up to ``rounds`` runs per shape,
    both dtypes in turn each round, stopping early once ``budget_s`` is spent)."""
    head_rows = min(vocab, HEAD_ROWS)
    weights = {torch.float32: (torch.rand(4 * hidden, hidden) - 0.5, torch.rand(head_rows, hidden) - 0.5)}
    weights[torch.bfloat16] = tuple(w.to(torch.bfloat16) for w in weights[torch.float32])
    cases = [(dtype, rows, w) for dtype, pair in weights.items() for rows in (1, 4) for w in pair]
    inputs = {(dtype, rows): torch.rand(rows, hidden, dtype=dtype) for dtype in weights for rows in (1, 4)}
    best = [float("inf")] * len(cases)
    start = time.perf_counter()
    with torch.inference_mode():
        for dtype, rows, w in cases:  # warm-up: oneDNN builds its kernels on the first call of each shape
            F.linear(inputs[dtype, rows], w)
        for _ in range(rounds):
            for i, (dtype, rows, w) in enumerate(cases):
                tick = time.perf_counter()
                F.linear(inputs[dtype, rows], w)
                best[i] = min(best[i], time.perf_counter() - tick)
            if time.perf_counter() - start > budget_s:
                break
    total = {dtype: sum(t for t, (d, _, _) in zip(best, cases, strict=True) if d is dtype) for dtype in weights}
    return Timings(float32=total[torch.float32], bfloat16=total[torch.bfloat16])


def _read(path: Path) -> dict:
    try:
        verdicts = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none yet, or a broken file: measure again and rewrite it
        return {}
    return verdicts if isinstance(verdicts, dict) else {}


def cpu_dtype(hidden: int, vocab: int, timer: Callable[[int, int], Timings] = measure) -> torch.dtype:
    """The dtype this CPU serves a model of width ``hidden`` and ``vocab`` tokens in: cached, else measured."""
    path = cache_dir() / CACHE_FILE
    key = machine_key(hidden)
    verdicts = _read(path)
    entry = verdicts.get(key)
    if isinstance(entry, dict) and entry.get("dtype") in ("float32", "bfloat16"):
        log.info("CPU dtype %s (measured before on this machine: fp32 %.2f ms, bf16 %.2f ms; %s)", entry["dtype"],
                 entry.get("float32_ms", 0.0), entry.get("bfloat16_ms", 0.0), path)
        return getattr(torch, entry["dtype"])
    timings = timer(hidden, vocab)
    dtype = choose(timings)
    name = str(dtype).removeprefix("torch.")
    log.info("CPU dtype %s, measured: fp32 %.2f ms, bf16 %.2f ms per decode-shaped step (bf16 needs %.2fx)", name,
             timings.float32 * 1e3, timings.bfloat16 * 1e3, SPEEDUP)
    verdicts[key] = {"dtype": name, "float32_ms": round(timings.float32 * 1e3, 3),
                     "bfloat16_ms": round(timings.bfloat16 * 1e3, 3), "cpu": _cpu_facts()[0],
                     "torch": torch.__version__, "threads": torch.get_num_threads(), "hidden": hidden}
    try:  # a verdict that cannot be saved is measured again next time; nothing else depends on it
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        partial.write_text(json.dumps(verdicts, indent=1), encoding="utf-8")
        partial.replace(path)
    except OSError as exc:
        log.warning("cannot save the CPU dtype verdict in %s: %s", path, exc)
    return dtype
