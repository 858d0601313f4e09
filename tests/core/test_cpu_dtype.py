"""MAFIOSO_DTYPE=auto on a CPU: fp32, bf16 or int8 weights by a short measurement, cached per machine (issue 21)."""

import json
import time

import pytest
import torch

from mafioso.core import cpu_dtype as module
from mafioso.core.cpu_dtype import Timings, choose, cpu_dtype, measure


@pytest.fixture
def cache(monkeypatch, tmp_path):
    """An empty cache folder of this test's own."""
    monkeypatch.setenv("MAFIOSO_CACHE", str(tmp_path))
    return tmp_path


def counting(timings: Timings):
    """A timer that returns ``timings`` and counts its calls in ``.calls``."""
    def timer(hidden, vocab):
        timer.calls.append((hidden, vocab))
        return timings

    timer.calls = []
    return timer


@pytest.mark.parametrize(("fp32", "bf16", "expected"), [
    (1.0, 1.0, torch.float32),  # a tie: fp32 (exact)
    (1.10, 1.0, torch.float32),  # bf16 a little faster is not enough
    (1.15, 1.0, torch.bfloat16),
    (2.4, 1.0, torch.bfloat16),  # native bf16 (docs/BENCHMARKS.md)
    (1.0, 2.0, torch.float32),  # bf16 at half fp32's speed (issue 21's machine)
])
def test_bf16_only_when_clearly_faster(fp32, bf16, expected):
    assert choose(Timings(float32=fp32, bfloat16=bf16)) is expected


@pytest.mark.parametrize(("fp32", "bf16", "int8", "expected"), [
    (4.0, 2.0, 0.8, "int8"),  # issue 21's measurement: int8 the fastest
    (1.0, 0.5, 0.6, torch.bfloat16),  # the fastest wins
    (1.0, 1.0, 0.9, torch.float32),  # int8 a little faster is not enough either
    (1.0, 2.0, 0.85, "int8"),  # bf16 slow, int8 clearly faster
    (1.0, 0.8, None, torch.bfloat16),  # no int8 engine in this torch: bf16 or fp32 as before
])
def test_the_fastest_of_bf16_and_int8_when_clearly_faster_than_fp32(fp32, bf16, int8, expected):
    assert choose(Timings(float32=fp32, bfloat16=bf16, int8=int8)) == expected


def test_an_int8_verdict_is_cached_and_taken_again_only_where_int8_runs(cache, monkeypatch):
    assert cpu_dtype(640, 262144, timer=counting(Timings(float32=4.0, bfloat16=2.0, int8=1.0))) == "int8"
    [entry] = json.loads((cache / "cpu-dtype.json").read_text()).values()
    assert entry["dtype"] == "int8" and entry["int8_ms"] == 1000.0
    again = counting(Timings(float32=1.0, bfloat16=9.0, int8=9.0))
    assert cpu_dtype(640, 262144, timer=again) == "int8" and again.calls == []  # cached
    monkeypatch.setattr(module.cpu_quant, "available", lambda: False)  # e.g. the same cache under another torch
    assert cpu_dtype(640, 262144, timer=again) is torch.float32 and len(again.calls) == 1


def test_a_verdict_measured_without_int8_is_measured_again(cache, monkeypatch):
    """Verdicts cached before int8 was a candidate (another CANDIDATES) are not reused."""
    candidates = module.CANDIDATES
    monkeypatch.setattr(module, "CANDIDATES", "float32 bfloat16")
    cpu_dtype(640, 262144, timer=counting(Timings(float32=4.0, bfloat16=2.0)))
    monkeypatch.setattr(module, "CANDIDATES", candidates)  # not undo(): that would drop the test's cache folder
    timer = counting(Timings(float32=4.0, bfloat16=2.0, int8=1.0))
    assert cpu_dtype(640, 262144, timer=timer) == "int8" and len(timer.calls) == 1


def test_the_verdict_is_measured_once_per_machine(cache, caplog):
    timer = counting(Timings(float32=0.004, bfloat16=0.002))
    with caplog.at_level("INFO", logger="mafioso.core.cpu_dtype"):
        assert cpu_dtype(640, 262144, timer=timer) is torch.bfloat16
    assert "fp32 4.00 ms, bf16 2.00 ms" in caplog.text
    assert cpu_dtype(640, 262144, timer=counting(Timings(float32=1.0, bfloat16=9.0))) is torch.bfloat16  # cached
    assert timer.calls == [(640, 262144)]
    [entry] = json.loads((cache / "cpu-dtype.json").read_text()).values()
    assert entry["dtype"] == "bfloat16" and entry["torch"] == torch.__version__


@pytest.mark.parametrize("change", ["cpu", "flags", "threads", "width"])
def test_another_machine_or_setting_measures_again(cache, monkeypatch, change):
    cpu_dtype(640, 262144, timer=counting(Timings(float32=0.004, bfloat16=0.002)))
    hidden, (name, flags), threads = 640, module._cpu_facts(), torch.get_num_threads()
    if change == "cpu":
        monkeypatch.setattr(module, "_cpu_facts", lambda: ("Another CPU", flags))
    elif change == "flags":
        monkeypatch.setattr(module, "_cpu_facts", lambda: (name, flags + " amx_bf16"))
    elif change == "threads":
        monkeypatch.setattr(torch, "get_num_threads", lambda: threads + 1)
    else:
        hidden = 896
    timer = counting(Timings(float32=0.002, bfloat16=0.004))
    assert cpu_dtype(hidden, 262144, timer=timer) is torch.float32
    assert len(timer.calls) == 1
    assert len(json.loads((cache / "cpu-dtype.json").read_text())) == 2  # the first verdict is kept


def test_a_broken_cache_file_is_measured_again(cache):
    (cache / "cpu-dtype.json").write_text("{not json")
    timer = counting(Timings(float32=0.002, bfloat16=0.004))
    assert cpu_dtype(640, 262144, timer=timer) is torch.float32
    assert len(timer.calls) == 1


def test_a_real_measurement_is_short_and_picks_one_of_the_three(cache):
    start = time.perf_counter()
    timings = measure(640, 262144)  # the embedded Gemma 3's width and vocabulary
    took = time.perf_counter() - start
    assert timings.float32 > 0 and timings.bfloat16 > 0
    assert (timings.int8 is not None and timings.int8 > 0) == module.cpu_quant.available()
    assert took < 2.0  # ~0.4 s; slack for a loaded 2-core machine
    assert cpu_dtype(64, 1000) in (torch.float32, torch.bfloat16, "int8")
