"""bench/bench_packing.py on the CPU: the same packs through TRL's joined batch and through PackRows, timed, with
the same loss (the H100 figures are in docs/BENCHMARKS.md)."""

import re
import sys
from pathlib import Path

from tests.helpers import write_dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import bench_packing  # noqa: E402


def test_both_batchings_are_timed_on_the_same_packs_with_the_same_loss(tiny_model_dir, tmp_path, capsys):
    data = write_dataset(tmp_path / "train.json")
    assert bench_packing.main(["--base-model", str(tiny_model_dir), "--data", str(data), "--batch-size", "2",
                               "--max-length", "1024", "--steps", "1", "--warmup", "1"]) == 0
    rows = re.findall(r"^\| (joined|a row per pack)[^|]*\| ([\d.]+) \| ([\d,]+) \| ([\d.]+) \| - \|$",
                      capsys.readouterr().out, re.MULTILINE)
    assert [row[0] for row in rows] == ["joined", "a row per pack"]
    assert all(float(seconds) > 0 and int(tokens.replace(",", "")) > 0 for _, seconds, tokens, _ in rows)
    assert rows[0][3] == rows[1][3]  # the same mean loss to four places
