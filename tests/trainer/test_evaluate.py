"""`mafioso eval`: exact metric math on hand-made inputs, and the real command end to end on a tiny Gemma 3."""

import json
import math
from pathlib import Path

import pytest
import torch

from mafioso.worker.engine import Generation
from mafioso.worker.engines import load_engine
from mafioso.cli import main
from mafioso.core.config import GenerationConfig, TrainConfig, WorkerConfig
from mafioso.prompts import encode
from tests.helpers import SNIPPETS, write_dataset
from mafioso.trainer.dataset import load_samples
from mafioso.trainer.evaluate import generate_all, markdown_table, write_chart
from mafioso.trainer.metrics import (Prediction, code_identifiers, identifier_recall, lcs_length, response_nll,
                             rouge_l_f1, summarize)

# ------------------------------------------------------------------------------------------ ROUGE-L


def test_rouge_l_f1_matches_hand_computed_values():
    # LCS "the cat on the mat" = 5 of 6 tokens each way
    assert rouge_l_f1("the cat sat on the mat", "the cat is on the mat") == pytest.approx(5 / 6)
    # LCS 2: precision 2/4, recall 2/2 -> F1 = 2 * 0.5 * 1 / 1.5
    assert rouge_l_f1("a b c d", "a c") == pytest.approx(2 / 3)
    assert rouge_l_f1("Capisce, PAL!", "capisce pal") == 1.0  # case and punctuation do not count
    assert rouge_l_f1("", "anything") == 0.0 and rouge_l_f1("x y", "z") == 0.0
    assert lcs_length(list("abcbdab"), list("bdcaba")) == lcs_length(list("bdcaba"), list("abcbdab")) == 4


# ------------------------------------------------------------------------------- identifier recall

CREW = """import json

class Crew:
    def __init__(self):
        self.members = []

    def recruit(self, name):
        self.members.append(name)

def add(a, b):
    total = a + b
    print(len(str(total)))
    return total

for item in range(3):
    pass
x = json.dumps({})
"""


def test_identifiers_are_defined_assigned_and_called_names():
    # not: builtins (print, len, str, range), short names (x, a, b), parameters (name), loaded names (json)
    assert code_identifiers(CREW) == {"Crew", "__init__", "members", "recruit", "append", "add", "total",
                                      "item", "dumps"}


def test_unparseable_code_falls_back_to_identifier_words():
    assert code_identifiers("def broken(:\n    value = compute(len(xs)") == {"broken", "value", "compute"}


def test_identifier_recall_is_a_case_insensitive_whole_word_match():
    code = "def add_numbers(a, b):\n    result = a + b\n    return result"
    assert identifier_recall(code, "The `ADD_NUMBERS` function hands back the Result, pal.") == 1.0
    assert identifier_recall(code, "It calls add_numbers and returns results.") == 0.5  # 'results' != 'result'
    assert identifier_recall(code, "No names here.") == 0.0
    assert identifier_recall("x = 1\nprint(x)", "anything") is None  # nothing worth naming


# ------------------------------------------------------------------------------------- aggregation


def _prediction(code, prediction, tokens=10, finished=True, code_leak=False):
    return Prediction("k", code, "the reference", prediction, tokens, 0.5, finished, code_leak)


def test_summary_metrics_are_exact():
    predictions = [
        _prediction("total = 1", "It sets total, capisce?", tokens=6),  # recall 1, persona, no code
        _prediction("x = 1", "def f():", tokens=4, finished=False),  # no identifiers; a line of code
        _prediction("count = 2", "Nothing to see.", tokens=10, code_leak=True),  # recall 0; engine flagged
    ]
    m = summarize(predictions, loss=2.0, response_tokens=42, generation_s=4.0)
    assert m["loss"] == 2.0 and m["perplexity"] == pytest.approx(math.exp(2.0)) and m["response_tokens"] == 42
    assert m["identifier_recall"] == 0.5 and m["identifier_samples"] == 2
    assert m["persona_rate"] == pytest.approx(1 / 3)
    assert m["code_leak_rate"] == pytest.approx(2 / 3)
    assert m["stop_rate"] == pytest.approx(2 / 3)
    assert m["mean_words"] == pytest.approx((4 + 2 + 3) / 3)
    assert m["generated_tokens"] == 20 and m["tokens_per_s"] == 5.0 and m["mean_tokens"] == pytest.approx(20 / 3)
    assert m["rouge_l_f1"] == pytest.approx(rouge_l_f1("It sets total, capisce?", "the reference") / 3)
    assert summarize(predictions, None, 0, 0.0)["perplexity"] is None
    assert m["grounded"] is None and m["grounded_samples"] == 0  # nobody checked the claims


def test_grounded_is_the_share_of_checked_answers_without_unsupported_claims():
    claim = {"kind": "false concept", "claim": "recursive", "text": "a recursive capo"}
    predictions = [Prediction("a", "x = 1", "r", "p", 1, 0.1, True, unsupported=[]),
                   Prediction("b", "x = 1", "r", "p", 1, 0.1, True, unsupported=[claim, claim]),
                   Prediction("c", "x = 1", "r", "p", 1, 0.1, True, unsupported=[])]
    m = summarize(predictions, None, 0, 1.0)
    assert m["grounded"] == pytest.approx(2 / 3) and m["grounded_samples"] == 3
    assert m["unsupported"] == {"invented name": 0, "false concept": 2, "false role": 0, "false output": 0,
                                "no answer": 0}


def test_loop_rate_counts_looping_answers_cut_or_not():
    predictions = [_prediction("x = 1", "Capisce?"), _prediction("x = 1", "Capisce?"),
                   Prediction("k", "x = 1", "ref", "It prints 1, 2, 3, 4", 200, 0.5, False, looped=True),
                   Prediction("k", "x = 1", "ref", "It counts up.", 40, 0.5, True, looped=True)]  # cut by the engine
    m = summarize(predictions, loss=None, response_tokens=0, generation_s=1.0)
    assert m["loop_rate"] == 0.5 and m["stop_rate"] == 0.75
    assert summarize([], None, 0, 0.0)["loop_rate"] is None


def test_markdown_table_has_a_delta_column_for_two_models():
    table = markdown_table({"base": {"loss": 3.0}, "adapter": {"loss": 2.5}})
    assert table.splitlines()[0] == "| metric | base | adapter | Δ |"
    assert "| validation loss | 3.0000 | 2.5000 | -0.5000 |" in table
    assert "| ROUGE-L F1 | n/a | n/a | n/a |" in table


def test_the_chart_marks_direction_and_samples_for_one_model_or_two(tmp_path):
    import matplotlib.pyplot as plt

    saved = []
    original = plt.Figure.savefig

    def spy(fig, path, **kwargs):
        saved.append([ax.get_title() for ax in fig.axes if ax.get_visible()])
        return original(fig, path, **kwargs)

    plt.Figure.savefig = spy
    try:
        one = {"adapter": {"loss": 2.0, "grounded": 0.5, "grounded_samples": 4, "identifier_samples": 3}}
        write_chart(one, tmp_path / "one.png", samples=5, reference={"grounded": 0.9, "mean_words": 40.0})
        write_chart({"base": {"loss": 3.0}, **one}, tmp_path / "two.png", samples=5)
    finally:
        plt.Figure.savefig = original
    for path in ("one.png", "two.png"):
        assert (tmp_path / path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    titles = saved[0]
    assert len(titles) == 12 and all(" better, n=" in t for t in titles)
    assert "validation loss  (↓ better, n=5)" in titles and "grounded  (↑ better, n=4)" in titles
    assert "identifier recall  (↑ better, n=3)" in titles and "mean words  (≈ ref better, n=5)" in titles


def test_eval_records_grounded_with_a_stand_in_engine(tmp_path, monkeypatch, capsys):
    from mafioso.worker import engines
    from mafioso.trainer import evaluate

    rows = [("explain", "def add(a, b):\n    return a + b\n\nprint(add(2, 3))", "`add` sums them and prints 5."),
            ("explain", "for i in range(3):\n    print(i)", "A loop that prints 0, 1 and 2, kid.")]
    answers = {rows[0][1]: "`add` is a recursive function calling `add_all` that prints 6, pal.",
               rows[1][1]: "The loop prints 0, 1 and 2, capisce?"}

    class StandIn:  # the engine at the boundary: answers by code, no model behind it
        device, persona = "cpu", "mafioso"

        def generate(self, requests):
            return [Generation(text=answers[code], tokens=5, finished=True) for code, _ in requests]

        def close(self):
            pass

    monkeypatch.setattr(engines, "load_engine", lambda cfg, gen, **_: StandIn())
    monkeypatch.setattr(evaluate, "response_loss", lambda engine, samples, batch_size, label: (2.0, 10))
    data = write_dataset(tmp_path / "val.json", rows)
    out = tmp_path / "eval"
    assert main(["eval", "--data", str(data), "--out", str(out), "--adapter", "none",
                 "--base-model", "stand-in", "--device", "cpu"]) == 0
    predictions = {r["key"]: r for r in _lines(out / "predictions.jsonl")}
    assert {(c["kind"], c["claim"]) for c in predictions["s0"]["unsupported"]} == {
        ("invented name", "add_all"), ("false concept", "recursive"), ("false output", "6")}
    assert predictions["s1"]["unsupported"] == []
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["base"]["grounded"] == 0.5 and metrics["base"]["grounded_samples"] == 2
    assert metrics["base"]["unsupported"] == {"invented name": 1, "false concept": 1, "false role": 0,
                                              "false output": 1, "no answer": 0}
    assert metrics["reference"]["grounded"] == 1.0
    assert metrics["config"]["sandbox"]["snippets"] == 2 and metrics["config"]["sandbox"]["runnable"] == 2
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # one model gets a chart too
    assert "| grounded | 0.5000 |" in capsys.readouterr().out


def test_answers_come_back_in_dataset_order(tmp_path):
    samples = load_samples([write_dataset(tmp_path / "d.json")])

    class FakeEngine:  # batches are sorted by code length; the output must not be
        def generate(self, requests):
            return [Generation(text=code[::-1], tokens=len(code), finished=True) for code, _ in requests]

    predictions, spent = generate_all(FakeEngine(), samples, batch_size=3, label="fake")
    assert [p.key for p in predictions] == [s.key for s in samples]
    assert all(p.prediction == s.code[::-1] and p.reference == s.explanation for p, s in zip(predictions, samples))
    assert spent >= 0


# ------------------------------------------------------------------------------------ response loss


def test_batched_response_loss_equals_the_per_sample_training_loss(tiny_model_dir, tmp_path):
    engine = load_engine(WorkerConfig(base_model=str(tiny_model_dir), adapter="none", device="cpu"),
                         GenerationConfig())
    samples = load_samples([write_dataset(tmp_path / "d.json")])[:4]
    rows = [encode(engine.tokenizer, s.code, s.prompt, s.explanation) for s in samples]
    expected_sum, expected_count = 0.0, 0
    with torch.no_grad():
        for row in rows:  # what the trainer computes: mean NLL over the unmasked labels of one row
            ids = torch.tensor([row["input_ids"]])
            labels = torch.tensor([[t if m else -100 for t, m in zip(row["input_ids"], row["completion_mask"])]])
            n = sum(row["completion_mask"])
            expected_sum += engine.model(input_ids=ids, labels=labels).loss.item() * n
            expected_count += n
    total, count = response_nll(engine.model, rows, engine.tokenizer.pad_token_id, "cpu", batch_size=3)
    assert count == expected_count
    assert total / count == pytest.approx(expected_sum / expected_count, rel=1e-4)


def test_loss_batches_cap_the_logits_memory(monkeypatch):
    from mafioso.trainer import metrics

    rows = [{"completion_mask": [1] * n} for n in (9, 9, 4, 30, 2)]
    assert [len(b) for b in metrics.loss_batches(rows, batch_size=2, vocab=100)] == [2, 2, 1]
    monkeypatch.setattr(metrics, "LOSS_LOGITS_BYTES", 2 * 10 * 100 * 4)  # two rows of 9 response tokens
    batches = metrics.loss_batches(rows, batch_size=64, vocab=100)
    assert [len(b) for b in batches] == [2, 1, 1, 1] and sum(batches, []) == rows


# --------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def tiny_adapter(tiny_model_dir, tmp_path_factory):
    """A LoRA adapter trained for one epoch on the helper snippets."""
    from mafioso.trainer.train import train

    root = tmp_path_factory.mktemp("eval-adapter")
    data = write_dataset(root / "train.json")
    return train(TrainConfig(base_model=str(tiny_model_dir), data=[str(data)], output=str(root / "adapter"),
                             epochs=1, lora_r=4, learning_rate=0.01, logging_steps=1))


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_eval_compares_adapter_and_base(tiny_model_dir, tiny_adapter, tmp_path, capsys):
    data = write_dataset(tmp_path / "val.jsonl", fmt="jsonl")
    out = tmp_path / "eval"
    rc = main(["eval", "--data", str(data), "--out", str(out), "--base-model", str(tiny_model_dir),
               "--adapter", str(tiny_adapter), "--compare-base", "--limit", "5", "--batch-size", "2",
               "--max-new-tokens", "6", "--device", "cpu"])
    assert rc == 0
    keys = [s.key for s in load_samples([data])][:5]
    for path in (out / "predictions.jsonl", out / "base" / "predictions.jsonl"):
        rows = _lines(path)
        assert [r["key"] for r in rows] == keys
        assert set(rows[0]) == {"key", "code", "reference", "prediction", "tokens", "latency_s", "finished",
                                "code_leak", "looped", "unsupported", "dropped", "raw_prediction", "retried",
                                "unsupported_raw"}
        assert all(isinstance(r["unsupported"], list) for r in rows)
        assert all(0 < r["tokens"] <= 6 and r["latency_s"] > 0 for r in rows)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"adapter", "base", "reference", "config", "samples"} and metrics["samples"] == 5
    for name in ("adapter", "base"):
        m = metrics[name]
        assert {"loss", "perplexity", "rouge_l_f1", "identifier_recall", "grounded", "persona_rate",
                "code_leak_rate", "stop_rate", "mean_words", "tokens_per_s"} <= set(m)
        assert 0 <= m["grounded"] <= 1 and m["grounded_samples"] == 5
        assert m["perplexity"] == pytest.approx(math.exp(m["loss"])) and m["tokens_per_s"] > 0
        assert 0 <= m["stop_rate"] <= 1 and 0 <= m["rouge_l_f1"] <= 1
    assert metrics["adapter"]["loss"] != metrics["base"]["loss"]  # the base run really dropped the adapter
    assert metrics["config"]["base_model"] == str(tiny_model_dir) and metrics["config"]["batch_size"] == 2
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| metric | base | adapter | Δ |" in capsys.readouterr().out


def test_eval_of_the_bare_base_writes_one_model(tiny_model_dir, tmp_path):
    data = write_dataset(tmp_path / "val.json", SNIPPETS[:2])
    out = tmp_path / "eval"
    rc = main(["eval", "--data", str(data), "--out", str(out), "--base-model", str(tiny_model_dir),
               "--adapter", "none", "--max-new-tokens", "4", "--device", "cpu"])
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"base", "reference", "config", "samples"} and metrics["samples"] == 2
    assert len(_lines(out / "predictions.jsonl")) == 2 and (out / "comparison.png").exists()  # issue 22


@pytest.mark.parametrize("flags, message", [
    (["--adapter", "none", "--compare-base"], "--compare-base compares an adapter"),
    (["--limit", "0"], "--limit must be at least 1"),
    (["--compare", "default", "--compare-base"], "not both"),
    (["--compare", "none"], "use --compare-base"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
])
def test_bad_flags_fail_with_a_message(tmp_path, capsys, flags, message):
    data = write_dataset(tmp_path / "d.json")
    assert main(["eval", "--data", str(data), "--out", str(tmp_path / "o"), *flags]) == 2
    assert message in capsys.readouterr().err


def test_unknown_quantization_is_refused_by_the_parser(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--data", "d.json", "--out", str(tmp_path), "--quantization", "fp8"])
    assert exc.value.code == 2 and "invalid choice: 'fp8'" in capsys.readouterr().err


def test_missing_dataset_fails_with_a_message(tmp_path, capsys):
    assert main(["eval", "--data", str(tmp_path / "nope.json"), "--out", str(tmp_path / "o")]) == 2
    assert "file not found" in capsys.readouterr().err


def test_eval_compare_puts_two_adapters_side_by_side_and_gates_the_default(tmp_path, monkeypatch, capsys):
    from mafioso.worker import engines
    from mafioso.trainer import evaluate

    rows = [("explain", "def add(a, b):\n    return a + b\n\nprint(add(2, 3))", "`add` sums them and prints 5."),
            ("explain", "for i in range(3):\n    print(i)", "A loop that prints 0, 1 and 2, kid.")]
    current, retrained = tmp_path / "current", tmp_path / "retrained"
    answers = {  # the retrained adapter makes an unsupported claim the current one does not: grounded 1.0 -> 0.5
        "current": {rows[0][1]: "`add` sums a and b and prints 5, pal.", rows[1][1]: "The loop prints 0, 1 and 2."},
        "retrained": {rows[0][1]: "`add` is recursive and prints 6, pal.", rows[1][1]: "The loop prints 0, 1 and 2."},
    }
    for folder in (current, retrained):
        folder.mkdir()
        (folder / "adapter_config.json").write_text("{}")
    seen = []

    class StandIn:  # the engine at the boundary: answers by adapter and code, no model behind it
        device, persona = "cpu", "mafioso"

        def __init__(self, cfg, gen):
            self.name = Path(cfg.adapter).name
            seen.append((self.name, cfg.base_model, gen))

        def generate(self, requests):
            return [Generation(text=answers[self.name][code], tokens=5, finished=True) for code, _ in requests]

        def close(self):
            pass

    monkeypatch.setattr(engines, "load_engine", lambda cfg, gen, **_: StandIn(cfg, gen))
    monkeypatch.setattr(evaluate, "response_loss", lambda engine, samples, batch_size, label: (2.0, 10))
    data = write_dataset(tmp_path / "val.json", rows)
    out = tmp_path / "eval"
    assert main(["eval", "--data", str(data), "--out", str(out), "--adapter", str(retrained),
                 "--compare", str(current), "--base-model", "stand-in", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0] == "| metric | current | retrained | Δ |"
    assert "| grounded | 1.0000 | 0.5000 | -0.5000 |" in printed
    assert "gate: FAIL" in printed and "grounded: 1.000 -> 0.500" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["current"]["grounded"] == 1.0 and metrics["retrained"]["grounded"] == 0.5
    assert metrics["gate"]["replaces_default"] is False
    assert len(_lines(out / "compare" / "predictions.jsonl")) == 2 and (out / "comparison.png").exists()
    (a, base_a, gen_a), (b, base_b, gen_b) = seen  # same base, same decoding
    assert {a, b} == {"current", "retrained"} and base_a == base_b == "stand-in" and gen_a == gen_b


def test_the_gate_allows_a_drop_within_the_noise():
    from mafioso.trainer.evaluate import gate

    current = {"grounded": 0.55, "persona_rate": 0.88, "stop_rate": 1.0}
    assert gate(current, {"grounded": 0.51, "persona_rate": 0.75, "stop_rate": 0.97})[0] is True
    assert gate(current, {"grounded": 0.55, "persona_rate": 0.70, "stop_rate": 1.0})[0] is False


def test_eval_reads_the_worker_s_settings_as_the_worker_does(tmp_path, monkeypatch, clean_env):
    """MAFIOSO_GROUNDED_DECODING=false mafioso eval decodes as the worker would (issue 18: eval read no env)."""
    from mafioso.worker import engines
    from mafioso.trainer import evaluate

    seen = []

    class StandIn:
        device, persona = "cpu", "mafioso"

        def __init__(self, cfg, gen):
            seen.append((cfg, gen))

        def generate(self, requests):
            return [Generation(text="It prints, pal.", tokens=3, finished=True) for _ in requests]

        def close(self):
            pass

    monkeypatch.setattr(engines, "load_engine", lambda cfg, gen, persona=None: StandIn(cfg, gen))
    monkeypatch.setattr(evaluate, "response_loss", lambda engine, samples, batch_size, label: (2.0, 10))
    for name, value in (("GROUNDED_DECODING", "false"), ("MAX_NEW_TOKENS", "77"), ("DTYPE", "float32"),
                        ("DEVICE", "cuda"), ("BASE_MODEL", "stand-in")):
        monkeypatch.setenv(f"MAFIOSO_{name}", value)
    data = write_dataset(tmp_path / "val.json", [("explain", "print(1)", "It prints 1, pal.")])
    assert main(["eval", "--data", str(data), "--out", str(tmp_path / "o"), "--adapter", "none",
                 "--device", "cpu", "--no-drop-unsupported"]) == 0
    ((cfg, gen),) = seen
    assert (gen.grounded_decoding, gen.max_new_tokens, gen.drop_unsupported) == (False, 77, False)
    assert (cfg.dtype, cfg.device, cfg.base_model, cfg.adapter) == ("float32", "cpu", "stand-in", "none")


def test_an_empty_answer_is_not_a_grounded_one():
    from mafioso.trainer.grounding import unsupported_claims

    assert unsupported_claims("x = 1\n", "  \n") == [{"kind": "no answer", "claim": "no answer", "text": ""}]
    assert unsupported_claims("x = 1\n", "It sets `x` to 1, capisce?") == []
    predictions = [Prediction("a", "x = 1", "r", "", 20, 0.1, True, unsupported=unsupported_claims("x = 1", "")),
                   Prediction("b", "x = 1", "r", "It sets `x`.", 5, 0.1, True, unsupported=[])]
    m = summarize(predictions, None, 0, 1.0)
    assert m["grounded"] == 0.5 and m["unsupported"]["no answer"] == 1
