"""The ``mafioso`` command line: help texts, command groups, exit codes (issue 22)."""

import json

import pytest

from mafioso.cli import main


def test_help_shows_each_settings_default(capsys):
    with pytest.raises(SystemExit):
        main(["worker", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 8000)" in text and "(default: 200)" in text  # --port, --max-new-tokens
    assert "TrainConfig" not in text and "API_KEY" not in text


@pytest.mark.parametrize("group, command", [("data", "check"), ("model", "prepare")])
def test_a_command_group_alone_lists_its_commands(capsys, group, command):
    assert main([group]) == 2
    err = capsys.readouterr().err
    assert command in err and "data_command" not in err and "model_command" not in err


def test_data_check_refuses_an_empty_dataset(tmp_path, capsys):
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps([]))
    assert main(["data", "check", str(empty)]) == 1
    assert "no samples" in capsys.readouterr().err


def test_data_check_failure_reads_like_a_check(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": {"prompt": "p"}}')
    assert main(["data", "check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "problem(s) found" in err and "nothing was changed" not in err
