"""bench/batch_invariance.py answers a set alone and as one batch through the real engine (a tiny random model on
the CPU, each prompt prefilled alone as served there), and counts the same texts."""

import json

from tests.bench import load


def test_the_cpu_answers_a_set_alike_alone_and_in_one_batch(tiny_model_dir, tmp_path, capsys):
    bench = load("batch_invariance")
    out = tmp_path / "answers.json"
    assert bench.main(["--base-model", str(tiny_model_dir), "--adapter", "none", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    answers = json.loads(out.read_text())
    assert len(answers["alone"]) == len(answers["together"]) == summary["of"] == 20
    assert summary["same"] == sum(a == b for a, b in zip(answers["alone"], answers["together"])) == 20
    assert bench.parted("abcd", "abxd") == 2 and bench.parted("ab", "abc") == 2
