"""Shared fixtures: the tiny model, the fake and real engines, a tiny adapter, a clean environment."""

import json

import pytest

from mafioso.core.config import GenerationConfig, WorkerConfig
from tests.tiny_models import tiny_model, tiny_qwen_model
from tests.worker.helpers import FakeEngine


@pytest.fixture(scope="session", autouse=True)
def machine_caches(tmp_path_factory):
    """This session's cache folder, ``MAFIOSO_CACHE`` (so subprocesses use it too): no test writes to the real
    one. The base models already converted there are linked in, read only, so the slow tests do not convert
    them again; a test that wants an empty cache of its own sets ``MAFIOSO_CACHE`` to its ``tmp_path``."""
    from mafioso.core.base_model import _DONE_MARK
    from mafioso.core.files import cache_dir

    real, folder = cache_dir(), tmp_path_factory.mktemp("machine-cache")
    for converted in sorted(real.iterdir()) if real.is_dir() else ():
        if (converted / _DONE_MARK).is_file():
            (folder / converted.name).symlink_to(converted, target_is_directory=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MAFIOSO_CACHE", str(folder))
        yield folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random Gemma 3 text model + tokenizer folder, built once per test session."""
    return tiny_model(tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_qwen_dir(tmp_path_factory):
    """A tiny random Qwen2 model + tokenizer folder (Qwen's special tokens), built once per test session."""
    return tiny_qwen_model(tmp_path_factory)


@pytest.fixture
def fake_engine():
    """A fresh fake engine."""
    return FakeEngine()


@pytest.fixture(scope="session")
def engine(tiny_model_dir):
    """The real reference Engine (transformers ``generate``) on the tiny random model (CPU, fp32, 8 new tokens),
    shared by the session; tests/worker/test_fast_decode.py holds the fast path to it."""
    from mafioso.worker.engines import load_engine

    cfg = WorkerConfig(base_model=str(tiny_model_dir), adapter="none", device="cpu", fast_decode=False)
    return load_engine(cfg, GenerationConfig(max_new_tokens=8))


@pytest.fixture(scope="session")
def tiny_adapter_dir(tiny_model_dir, tmp_path_factory):
    """A LoRA adapter on the tiny model with random (non-zero) weights and a mafioso.json naming its base."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    folder = tmp_path_factory.mktemp("tiny-adapter")
    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False,
                      task_type="CAUSAL_LM")
    get_peft_model(model, lora).save_pretrained(folder)
    from mafioso.core.base_model import model_facts

    base = {"name": str(tiny_model_dir), **model_facts(model.config)}  # what the trainer records
    from mafioso.prompts import PROMPT_FORMAT

    (folder / "mafioso.json").write_text(json.dumps({"base_model": str(tiny_model_dir), "base": base,
                                                     "prompt_format": PROMPT_FORMAT}))
    return folder


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """Keep the developer's MAFIOSO_* variables and .env out of a test that reads settings."""
    import os

    for name in list(os.environ):
        if name.startswith("MAFIOSO_") and name != "MAFIOSO_CACHE":
            monkeypatch.delenv(name)
    monkeypatch.setenv("MAFIOSO_FEEDBACK_DB", str(tmp_path / "feedback.sqlite3"))  # never the cache folder's
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def no_chat_env(monkeypatch, tmp_path):
    """Keep the developer's DISCORD_* / SLACK_* / MAFIOSO_* variables and .env out of a test (its cwd is empty)."""
    import os

    for name in list(os.environ):
        if name.startswith(("DISCORD_", "SLACK_", "MAFIOSO_")) and name != "MAFIOSO_CACHE":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
