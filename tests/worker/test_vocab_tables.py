"""Vocabulary tables cached per tokenizer (worker/vocab_tables.py, issue 21 cold start): the same ids as decoding
every token, read back from disk on a second start, computed again when the tokenizer or the file changes."""

import json
import shutil

import pytest
from transformers import AutoTokenizer

from mafioso.core import tokenizer_cache
from mafioso.worker.vocab_tables import tokens_containing


def _decoded(tokenizer, text):
    return {i for i in range(len(tokenizer)) if text in tokenizer.decode([i])}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setattr(tokenizer_cache, "cache_dir", lambda: folder)
    return folder


def test_the_table_is_every_token_whose_text_holds_it_and_is_read_back(tiny_model_dir, cache, monkeypatch):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    expected = _decoded(tokenizer, "#")
    assert expected and tokens_containing(tokenizer, "#") == expected
    [saved] = (cache / "tokenizer").iterdir()
    assert set(json.loads(saved.read_text())) == expected
    with monkeypatch.context() as patch:
        patch.setattr(tokenizer, "decode", lambda ids: pytest.fail("decoded again instead of reading the file"))
        assert tokens_containing(tokenizer, "#") == expected
    assert tokens_containing(tokenizer, "e") == _decoded(tokenizer, "e") != expected  # another text, another file
    assert len(list((cache / "tokenizer").iterdir())) == 2


def test_another_tokenizer_or_a_broken_file_is_computed_again(tiny_model_dir, tiny_qwen_dir, tmp_path, cache):
    gemma = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokens_containing(gemma, "#")
    [saved] = (cache / "tokenizer").iterdir()
    saved.write_text("[1, 2, ", encoding="utf-8")  # cut short
    assert tokens_containing(gemma, "#") == _decoded(gemma, "#")
    copy = tmp_path / "changed"
    shutil.copytree(tiny_model_dir, copy)
    config = json.loads((copy / "tokenizer_config.json").read_text())
    config["extra_special_tokens"] = ["<#tool#>"]  # one more token, which holds "#"
    (copy / "tokenizer_config.json").write_text(json.dumps(config))
    changed = AutoTokenizer.from_pretrained(copy)
    assert len(changed) == len(gemma) + 1
    assert tokens_containing(changed, "#") == _decoded(gemma, "#") | {len(gemma)}
    qwen = AutoTokenizer.from_pretrained(tiny_qwen_dir)
    assert tokens_containing(qwen, "#") == _decoded(qwen, "#")
    assert len(list((cache / "tokenizer").iterdir())) == 3


def test_a_tokenizer_without_files_is_not_cached(tiny_model_dir, cache):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.name_or_path = ""
    assert tokens_containing(tokenizer, "#") == _decoded(tokenizer, "#")
    assert not cache.exists()
