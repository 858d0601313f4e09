"""Which dtype a CPU serves answers in, chosen by measuring it (``MAFIOSO_DTYPE=auto`` on a CPU, issue 21).

oneDNN says "bf16 supported" on CPUs where bf16 decodes at half the speed of fp32, so the choice comes from a
short timing at load instead: a few matmuls shaped like one decode step of the model (a few rows × an MLP-sized
weight, and a slice of the LM head, which is most of the bytes a token reads), in fp32, bf16 and as int8 weights
(:mod:`mafioso.core.cpu_quant`, where this torch has its engine), interleaved so that other load on the machine
hits all alike, best of a few. The fastest wins, but bf16 or int8 only when clearly faster than fp32
(:data:`SPEEDUP`: their answers differ a little from fp32's). The verdict is cached per machine in
``cache_dir()/cpu-dtype.json``, keyed by the CPU model, its flags, the torch version, the thread count, the
model's width and the candidates measured: a second start does not measure again.

    dtype = cpu_dtype(hidden=640, vocab=262144)   # torch.bfloat16, torch.float32 or "int8"
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

from mafioso.core import cpu_quant
from mafioso.core.files import cache_dir

__all__ = ["SPEEDUP", "Timings", "choose", "cpu_dtype", "machine_key", "measure"]

log = logging.getLogger(__name__)

#: bf16 or int8 must be at least this much faster than fp32 to be chosen (their answers differ a little from fp32's).
SPEEDUP = 1.15
#: What is measured, part of the cache key: a verdict from before int8 was a candidate is measured again.
CANDIDATES = f"float32 bfloat16 int8-v{cpu_quant.VERSION}"
CACHE_FILE = "cpu-dtype.json"
HEAD_ROWS = 16384  # LM head rows timed: 42 MB in fp32 at width 640, past the caches like the real 262,144 rows


@dataclass(frozen=True)
class Timings:
    """Seconds for the measured decode-shaped matmuls, summed over the shapes (each shape's best run); int8 is
    None where this torch cannot run int8 weights."""

    float32: float
    bfloat16: float
    int8: float | None = None


def choose(timings: Timings) -> torch.dtype | str:
    """The fastest of bf16 and int8 (``"int8"``) when it is at least :data:`SPEEDUP` times faster than fp32,
    else fp32."""
    candidates = {torch.bfloat16: timings.bfloat16, cpu_quant.INT8: timings.int8}
    fastest, seconds = min(((k, v) for k, v in candidates.items() if v is not None), key=lambda kv: kv[1])
    return fastest if timings.float32 >= SPEEDUP * seconds else torch.float32


def _name(dtype: torch.dtype | str) -> str:
    return str(dtype).removeprefix("torch.")


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
    """What the verdict depends on, hashed: CPU model and flags, torch version, thread count, model width, and
    the candidates measured."""
    name, flags = _cpu_facts()
    facts = [name, flags, torch.__version__, str(torch.get_num_threads()), str(hidden), CANDIDATES]
    return hashlib.sha256("\n".join(facts).encode()).hexdigest()[:24]


def measure(hidden: int, vocab: int, rounds: int = 7, budget_s: float = 0.35) -> Timings:
    """Time decode-shaped matmuls in fp32, bf16 and int8 weights (warm-up, then the best of up to ``rounds`` runs
    per shape, every kind in turn each round, stopping early once ``budget_s`` is spent; packing the int8 weights
    is not timed)."""
    head_rows = min(vocab, HEAD_ROWS)
    fp32 = (torch.rand(4 * hidden, hidden) - 0.5, torch.rand(head_rows, hidden) - 0.5)
    weights = {"float32": fp32, "bfloat16": tuple(w.to(torch.bfloat16) for w in fp32)}
    if cpu_quant.available():
        weights["int8"] = tuple(cpu_quant.Int8Weight.of(w) for w in fp32)
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "int8": torch.float32}  # int8: fp32 inputs
    cases = [(kind, rows, w) for kind, pair in weights.items() for rows in (1, 4) for w in pair]
    inputs = {(kind, rows): torch.rand(rows, hidden, dtype=dtypes[kind]) for kind in weights for rows in (1, 4)}
    best = [float("inf")] * len(cases)
    start = time.perf_counter()
    with torch.inference_mode():
        for kind, rows, w in cases:  # warm-up: oneDNN builds its kernels on the first call of each shape
            F.linear(inputs[kind, rows], w)
        for _ in range(rounds):
            for i, (kind, rows, w) in enumerate(cases):
                tick = time.perf_counter()
                F.linear(inputs[kind, rows], w)
                best[i] = min(best[i], time.perf_counter() - tick)
            if time.perf_counter() - start > budget_s:
                break
    total = {kind: sum(t for t, (k, _, _) in zip(best, cases, strict=True) if k == kind) for kind in weights}
    return Timings(float32=total["float32"], bfloat16=total["bfloat16"], int8=total.get("int8"))


def _read(path: Path) -> dict:
    try:
        verdicts = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none yet, or a broken file: measure again and rewrite it
        return {}
    return verdicts if isinstance(verdicts, dict) else {}


def cpu_dtype(hidden: int, vocab: int, timer: Callable[[int, int], Timings] = measure) -> torch.dtype | str:
    """What this CPU serves a model of width ``hidden`` and ``vocab`` tokens in (torch.float32, torch.bfloat16 or
    ``"int8"``): cached, else measured."""
    path = cache_dir() / CACHE_FILE
    key = machine_key(hidden)
    verdicts = _read(path)
    entry = verdicts.get(key)
    known = {"float32": torch.float32, "bfloat16": torch.bfloat16, cpu_quant.INT8: cpu_quant.INT8}
    if isinstance(entry, dict) and entry.get("dtype") in known and (entry["dtype"] != cpu_quant.INT8
                                                                    or cpu_quant.available()):
        log.info("CPU dtype %s (measured before on this machine: fp32 %.2f ms, bf16 %.2f ms, int8 %s ms; %s)",
                 entry["dtype"], entry.get("float32_ms", 0.0), entry.get("bfloat16_ms", 0.0),
                 entry.get("int8_ms"), path)
        return known[entry["dtype"]]
    timings = timer(hidden, vocab)
    dtype = choose(timings)
    int8_ms = None if timings.int8 is None else round(timings.int8 * 1e3, 3)
    log.info("CPU dtype %s, measured: fp32 %.2f ms, bf16 %.2f ms, int8 %s ms per decode-shaped step (bf16 or int8 "
             "needs %.2fx)", _name(dtype), timings.float32 * 1e3, timings.bfloat16 * 1e3,
             "n/a" if int8_ms is None else f"{int8_ms:.2f}", SPEEDUP)
    verdicts[key] = {"dtype": _name(dtype), "float32_ms": round(timings.float32 * 1e3, 3),
                     "bfloat16_ms": round(timings.bfloat16 * 1e3, 3), "int8_ms": int8_ms, "cpu": _cpu_facts()[0],
                     "torch": torch.__version__, "threads": torch.get_num_threads(), "hidden": hidden}
    try:  # a verdict that cannot be saved is measured again next time; nothing else depends on it
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        partial.write_text(json.dumps(verdicts, indent=1), encoding="utf-8")
        partial.replace(path)
    except OSError as exc:
        log.warning("cannot save the CPU dtype verdict in %s: %s", path, exc)
    return dtype
