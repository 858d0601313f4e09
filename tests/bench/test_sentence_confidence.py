"""bench/sentence_confidence.py: hand-read verdicts become labelled sentences, and the scores' AUROC is right."""

from tests.bench import load


def _bench():
    return load("sentence_confidence")


def test_a_wrong_answer_labels_the_quoted_sentence_false_and_leaves_the_rest_unknown():
    bench = _bench()
    verdicts = {
        "a": {"set": 1, "number": 1, "right": False, "answered_by": "Qwen x", "text":
              "`f` walks the `items` list. So the loop runs `n` from 1 to 15. The family approves, pal.",
              "why": "'the loop runs n ... 15': it runs i"},
        "b": {"set": 1, "number": 2, "right": True, "answered_by": "Qwen x", "why": "",
              "text": "`g` returns 2. Capisce?"},
        "c": {"set": 1, "number": 3, "right": True, "answered_by": "Gemma y", "why": "", "text": "It is fine."},
    }
    rows = bench.labelled(verdicts, "Qwen")
    assert [row["labels"] for row in rows] == [[None, 1, None], [0, 0]]


def test_a_quote_is_found_whatever_its_backticks_and_skipped_words():
    bench = _bench()
    assert bench.holds("So `n` runs from 1 to `n` inclusive.", "n runs from 1 ... inclusive")
    assert not bench.holds("So `i` runs from 1 to `n` inclusive.", "n runs from 1 ... inclusive")
    assert bench.quotes("'prints tessio, then sal': one print; \"short\"") == ["prints tessio, then sal"]


def test_auroc_and_support():
    bench = _bench()
    assert bench.auroc([3, 4], [1, 2]) == 1.0 and bench.auroc([1, 2], [3, 4]) == 0.0
    assert bench.auroc([1, 2], [1, 2]) == 0.5
    samples = ["multiples of 15 get FizzBuzz", "the multiples of 15 get FizzBuzz, pal"]
    assert bench.support("Multiples of 15 get FizzBuzz.", samples) == 1.0
    assert bench.support("A number divisible by none gets nothing.", samples) == 0.0


def test_each_sentence_gets_only_its_own_tokens_figures():
    bench = _bench()
    text = "One two. Three."
    tokens = [(0, 3, -0.1, 1.0), (3, 7, -0.3, 1.0), (7, 8, -0.2, 0.5), (9, 14, -3.0, 2.0), (14, 15, -0.5, 0.1)]
    first, second = bench.sentence_scores(text, ["One two.", "Three."], tokens)
    assert abs(first["mean log-prob"] - 0.2) < 1e-9 and first["lowest log-prob"] == 0.3
    assert second["share under 10 %"] == 0.5
