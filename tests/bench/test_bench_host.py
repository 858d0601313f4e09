"""bench/bench_host.py --stand-in runs the whole worker on a stand-in device: every request is answered, the
answers end on their own (the stand-in's EOS), and the per-step breakdown comes back with the device's time as
most of a step."""

import sys
import tempfile
from pathlib import Path

from tests.bench import load

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    sys.path.insert(0, str(ROOT / "bench"))  # it imports bench_worker as the script does
    return load("bench_host")


def test_the_stand_in_device_serves_every_level():
    bench = _bench()
    folder = str(bench.tiny_gemma_dir(tempfile.mkdtemp(prefix="mafioso-test-host-"), flip_norm=True))
    rows = bench.stand_in(folder, device_ms=2.0, rows=4, gil_releases=1)  # its launch gives up the GIL once
    assert [row["concurrency"] for row in rows] == [1, 4]
    for row in rows:
        assert row["steps"] > 0 and row["tokens_per_s"] > 0
        assert {"launch_ms", "record_ms", "admit_ms"} <= row.keys() and row["gil_releases"] == 1
        assert row["wait_ms"] >= 1.0  # most of a step is the stand-in device's 2 ms
    assert rows[1]["rows_per_step"] > 1
