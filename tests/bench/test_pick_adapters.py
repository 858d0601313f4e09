"""bench/pick_adapters.py: a GPU round's scored adapters ranked against issue 16's targets, the best of each base
picked within the size a device call brings back."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GOOD = {"grounded": 0.95, "grounded_model": 0.85, "identifier_recall": 0.81, "persona_rate": 0.98,
        "code_leak_rate": 0.0, "stop_rate": 1.0, "loop_rate": 0.0, "mean_words": 70.0}


def scored(root: Path, eval_dir: str, base: str, size_mb: float, **metrics) -> None:
    """A sweep's eval of an adapter (or, for eval-e<N>, of its epoch snapshot) with weights of ``size_mb``."""
    folder = root / eval_dir
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"adapter": {**GOOD, **metrics}}))
    name = folder.name
    adapter = (folder.parent / "adapter.epochs" / f"epoch-{name.removeprefix('eval-e')}" if name.startswith("eval-e")
               else folder.parent / "adapter")
    adapter.mkdir(parents=True)
    (adapter / "mafioso.json").write_text(json.dumps({"base_model": base}))
    (adapter / "adapter_model.safetensors").write_bytes(b"\0" * int(size_mb * 1e6))


def test_the_best_of_each_base_is_picked_within_the_size_limit(tmp_path):
    scored(tmp_path, "g1/gf/eval", "embedded", 15, identifier_recall=0.82, stop_rate=0.976)  # misses stop
    scored(tmp_path, "g1/gf/eval-e5", "embedded", 15, identifier_recall=0.79)  # misses recall only
    scored(tmp_path, "g2/gf7/eval-e6", "embedded", 15)  # meets every target
    scored(tmp_path, "q/qf/eval", "qwen2.5-coder-0.5b", 18, code_leak_rate=0.008)
    scored(tmp_path, "q/qf/eval-e3", "qwen2.5-coder-0.5b", 18, identifier_recall=None)  # eval had no names to count
    scored(tmp_path, "q2/nan/eval", "qwen2.5-coder-0.5b", 18, grounded=0.0, persona_rate=0.0, identifier_recall=0.0,
           mean_words=0.0)  # a run that went NaN: empty answers
    (tmp_path / "g1" / "base" / "eval").mkdir(parents=True)
    (tmp_path / "g1" / "base" / "eval" / "metrics.json").write_text(json.dumps({"base": GOOD}))  # no adapter
    listed = tmp_path / "picked.txt"
    done = subprocess.run([sys.executable, "bench/pick_adapters.py", str(tmp_path), "--max-mb", "50",
                           "--list", str(listed)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")[-2] for line in done.stdout.splitlines()[2:]}
    # every target met; recall alone missed; then one other target missed each, the higher recall first
    assert list(rows) == ["g2/gf7/adapter.epochs/epoch-6", "g1/gf/adapter.epochs/epoch-5",
                          "q/qf/adapter.epochs/epoch-3", "g1/gf/adapter", "q/qf/adapter", "q2/nan/adapter"]
    assert list(rows.values()) == ["none", "identifier_recall", "identifier_recall", "stop_rate", "code_leak_rate",
                                   "grounded, persona_rate, identifier_recall"]
    # each base's best first (15 + 18 MB), then Gemma's next (15 MB) fits in 50 MB, Qwen's next would not
    assert listed.read_text().splitlines() == ["g2/gf7/adapter.epochs/epoch-6/adapter_model.safetensors",
                                               "q/qf/adapter.epochs/epoch-3/adapter_model.safetensors",
                                               "g1/gf/adapter.epochs/epoch-5/adapter_model.safetensors"]
    roomy = subprocess.run([sys.executable, "bench/pick_adapters.py", str(tmp_path), "--max-mb", "500",
                            "--list", str(listed)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert roomy.returncode == 0 and len(listed.read_text().splitlines()) == 5  # all but the one that said nothing
    assert "q2/nan" not in listed.read_text()


def test_nothing_scored_is_a_failure(tmp_path):
    done = subprocess.run([sys.executable, "bench/pick_adapters.py", str(tmp_path)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
