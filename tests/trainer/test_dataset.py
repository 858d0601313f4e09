"""Dataset loading: every accepted format, every bad input named by file, key and field."""

import json

import pytest

from mafioso.cli import main
from mafioso.core.errors import DatasetError
from tests.helpers import SNIPPETS, write_dataset
from mafioso.trainer.dataset import load_samples, split
from mafioso.trainer.lint import topics


@pytest.mark.parametrize("fmt", ["object", "list", "jsonl"])
def test_every_format_loads(tmp_path, fmt):
    samples = load_samples([write_dataset(tmp_path / f"d.{fmt}", fmt=fmt)])
    assert len(samples) == len(SNIPPETS)
    assert samples[0].code.startswith("def add")


def test_files_merge_and_extra_keys_are_ignored(tmp_path):
    a = write_dataset(tmp_path / "a.json", SNIPPETS[:3])
    rows = {"x": {"prompt": "p", "code": "y = 2", "mafia_explanation": "It sets y, pal.", "tags": ["a"]}}
    b = tmp_path / "b.json"
    b.write_text(json.dumps(rows))
    samples = load_samples([a, b])
    assert [s.key for s in samples] == ["s0", "s1", "s2", "x"]


def _problems(tmp_path, content: str, name="bad.json") -> list[str]:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DatasetError) as info:
        load_samples([path])
    return info.value.problems


def test_bad_json_names_line_and_column(tmp_path):
    (problem,) = _problems(tmp_path, '{\n  "a": {"prompt": "p",\n  "code": }\n}')
    assert "bad.json" in problem and "line 3" in problem and "column" in problem


def test_bad_jsonl_line_is_named(tmp_path):
    good = json.dumps({"prompt": "p", "code": "x = 1", "mafia_explanation": "e"})
    (problem,) = _problems(tmp_path, good + "\n{oops\n", name="bad.jsonl")
    assert "line 2" in problem


@pytest.mark.parametrize("row, expected", [
    ({"code": "x", "mafia_explanation": "e"}, "field 'prompt' is missing"),
    ({"prompt": "p", "code": "  ", "mafia_explanation": "e"}, "field 'code' is empty"),
    ({"prompt": "p", "code": 3, "mafia_explanation": "e"}, "field 'code' must be a string, got int"),
    ({"prompt": "p", "code": "x", "mafia_explanation": "Look:\n```\nx\n```"}, "contains a code block"),
    ("just text", "expected an object"),
    ({"prompt": "p", "code": "x = " + "-" * 50_000 + "1", "mafia_explanation": "e"},
     "field 'code' has 50,005 characters, over the limit"),  # was a MemoryError in the lint (issue 19)
])
def test_bad_rows_name_file_key_and_field(tmp_path, row, expected):
    (problem,) = _problems(tmp_path, json.dumps({"sample-7": row}))
    assert "bad.json" in problem and "'sample-7'" in problem and expected in problem


def test_a_repeated_key_is_refused_not_silently_dropped(tmp_path):
    row = json.dumps({"prompt": "p", "code": "x = 1", "mafia_explanation": "e"})
    (problem,) = _problems(tmp_path, f'{{"a": {row}, "a": {row.replace("x = 1", "y = 2")}}}')
    assert "key 'a' appears more than once" in problem


@pytest.mark.parametrize("name", ["bad.json", "bad.jsonl"])
def test_deeply_nested_json_is_a_clear_problem(tmp_path, name):
    (problem,) = _problems(tmp_path, "[" * 100_000 + "]" * 100_000, name=name)  # was a RecursionError traceback
    assert "nested too deep" in problem


def test_deep_code_is_linted_as_not_python():
    assert topics("x = " + "-" * 30_000 + "1") == {"not python"}  # the parser runs out of stack: no crash


def test_duplicate_code_names_both_keys(tmp_path):
    rows = {"a": {"prompt": "p", "code": "x = 1\n", "mafia_explanation": "e"},
            "b": {"prompt": "q", "code": "x  =  1", "mafia_explanation": "f"}}
    (problem,) = _problems(tmp_path, json.dumps(rows))
    assert "'b'" in problem and "duplicates" in problem and "'a'" in problem


def test_data_check_exit_codes_and_file_is_untouched(tmp_path, capsys):
    good = write_dataset(tmp_path / "good.json")
    assert main(["data", "check", "--schema-only", str(good)]) == 0
    assert f"total: {len(SNIPPETS)} samples" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    content = json.dumps({"k1": {"prompt": "p", "code": "x = 1"}})
    bad.write_text(content)
    assert main(["data", "check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "bad.json: key 'k1': field 'mafia_explanation' is missing" in err
    assert bad.read_text() == content


def test_seeded_split_is_stable_and_disjoint(tmp_path):
    samples = load_samples([write_dataset(tmp_path / "d.json")])
    train, val = split(samples, 0.25, seed=1)
    assert (train, val) == split(samples, 0.25, seed=1)
    assert len(val) == 2 and not {s.key for s in train} & {s.key for s in val}


def test_a_row_whose_prompt_alone_is_too_long_is_left_out_with_a_warning(tiny_model_dir):
    from mafioso.core.base_model import load_tokenizer
    from mafioso.trainer.dataset import Sample, tokenize

    tokenizer = load_tokenizer(str(tiny_model_dir))
    short = Sample("short", "t.json", "explain", "x = 1", "It sets `x`, pal.")
    long = Sample("long", "t.json", "explain", "\n".join(f"value_{i} = {i}" for i in range(200)), "Many values, pal.")
    budget = len(tokenize([short], tokenizer, 10_000)[0][0]["input_ids"]) + 5
    rows, warnings = tokenize([short, long], tokenizer, budget)
    assert len(rows) == 1 and any(rows[0]["completion_mask"])
    (warning,) = warnings
    assert "'long'" in warning and "left out" in warning


def test_rows_are_tokenized_in_the_prompt_format_asked_for(tiny_model_dir):
    from mafioso import prompts
    from mafioso.core.base_model import load_tokenizer
    from mafioso.core.config import TrainConfig
    from mafioso.core.errors import ConfigError
    from mafioso.trainer.dataset import Sample, tokenize

    tokenizer = load_tokenizer(str(tiny_model_dir))
    code = "def pick(xs):\n    for x in xs:\n        if x:\n            return x\n"
    sample = Sample("s", "t.json", "explain", code, "It picks, pal.")
    for fmt in (1, 2):
        [row], _ = tokenize([sample], tokenizer, 10_000, prompt_format=fmt)
        assert row == prompts.encode(tokenizer, code, "explain", "It picks, pal.", prompt_format=fmt)
    [current], _ = tokenize([sample], tokenizer, 10_000)
    assert current == row  # format 2 is the current one
    assert TrainConfig(data=["x.json"]).prompt_format == prompts.PROMPT_FORMAT
    assert TrainConfig(data=["x.json"], prompt_format=1).prompt_format == 1
    with pytest.raises(ConfigError, match="--prompt-format must be 1 to 2"):
        TrainConfig(data=["x.json"], prompt_format=3)
