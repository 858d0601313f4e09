"""bench/rescore_claims.py re-scores saved answers with the current checks: a false denial the old check missed
makes a model answer newly fail, the post-check now drops its sentence, and recorded false outputs are kept."""

import json

from tests.bench import load
POWER = ("def power(base, exp):\n    if exp == 0:\n        return 1\n    return base * power(base, exp - 1)\n\n"
         "print(power(2, 5))\n")


def _bench():
    return load("rescore_claims")


def _row(key, prediction, unsupported=()):
    return {"key": key, "code": POWER, "prediction": prediction, "raw_prediction": "",
            "unsupported": list(unsupported), "unsupported_raw": None}


def test_a_newly_caught_denial_is_listed_and_scored(tmp_path, capsys):
    wrong_output = {"kind": "false output", "claim": "64", "text": "So it prints 64."}
    rows = [_row("denies", "`power` multiplies `base`. The function never recurses; it just returns 1."),
            _row("true", "`power` calls itself until `exp` is 0. So it prints 32."),
            _row("output", "`power` calls itself. So it prints 64.", [wrong_output])]
    (tmp_path / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "metrics.json").write_text(json.dumps({"adapter": {"grounded": 2 / 3, "grounded_model": 2 / 3}}))

    assert _bench().main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "grounded 0.667 -> 0.667, grounded_model 0.667 -> 0.333; 1 answers changed" in out
    assert "-- denies: none -> false concept (denied): 'recursive'" in out
    assert "in: The function never recurses; it just returns 1." in out
    assert "-- true" not in out and "-- output" not in out


def test_the_served_answer_loses_the_denied_sentence():
    model, served, text = _bench().rescore(_row("d", "`power` multiplies `base`. It never recurses, capisce?"))
    assert [c.get("denied") for c in model] == [True] and served == [] and text == "`power` multiplies `base`."
