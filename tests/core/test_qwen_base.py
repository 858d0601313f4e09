"""A Qwen2 base end to end on a tiny random Qwen2: the real trainer, the real Engine, and the base checks.

The tiny Qwen2 has the tiny Gemma 3's shapes, so a Gemma adapter would load into it without a shape error:
only the recorded architecture tells them apart.
"""

import json
import logging
import shutil

import pytest

from mafioso import prompts
from mafioso.worker import engine as engine_module
from mafioso.worker.engine import GenerateEngine, adapter_folder, check_adapter_base
from mafioso.worker.engines import load_engine
from mafioso.worker.fast_engine import FastEngine
from mafioso.core.base_model import BASE_MARK, load_tokenizer
from mafioso.cli import main
from mafioso.core.config import GenerationConfig, WorkerConfig
from mafioso.core.errors import ModelError
from tests.helpers import write_dataset, write_one_row_validation


@pytest.fixture(scope="module")
def qwen_adapter(tiny_qwen_dir, tmp_path_factory):
    """One `mafioso train` run on the tiny Qwen2 (CPU, NF4 through bitsandbytes, the default targets)."""
    root = tmp_path_factory.mktemp("train-qwen")
    data = write_dataset(root / "train.json")
    val = write_one_row_validation(root / "val.jsonl")
    out = root / "adapter"
    assert main(["train", "--base-model", str(tiny_qwen_dir), "--data", str(data), "--validation", str(val),
                 "--output", str(out), "--lora-r", "4", "--epochs", "2", "--learning-rate", "0.01",
                 "--logging-steps", "1"]) == 0
    return out


def test_training_rows_end_with_the_eos_the_engine_stops_on(tiny_qwen_dir):
    tokenizer = load_tokenizer(str(tiny_qwen_dir))
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"  # as Qwen's
    row = prompts.encode(tokenizer, "print(1)", None, "It prints 1, pal.")
    engine = load_engine(WorkerConfig(base_model=str(tiny_qwen_dir), adapter="none", device="cpu"),
                         GenerationConfig(max_new_tokens=4))
    assert row["input_ids"][-1] == tokenizer.eos_token_id and row["completion_mask"][-1] == 1
    assert engine.eos_ids == sorted([tokenizer.eos_token_id, tokenizer.pad_token_id])  # both of Qwen's ends
    assert row["input_ids"][0] != tokenizer.pad_token_id  # Qwen adds no BOS: the prompt starts with the text


def test_the_adapter_records_its_base(qwen_adapter, tiny_qwen_dir):
    info = json.loads((qwen_adapter / "mafioso.json").read_text())
    assert info["base_model"] == str(tiny_qwen_dir)
    assert info["base"] == {"name": str(tiny_qwen_dir), "architecture": "qwen2", "hidden_size": 64,
                            "num_hidden_layers": 2}
    config = json.loads((qwen_adapter / "adapter_config.json").read_text())
    assert set(config["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                             "down_proj"}  # all seven exist in Qwen2 and were adapted


def test_the_engine_loads_the_qwen_adapter_and_answers(qwen_adapter, tiny_qwen_dir):
    # the base is read from mafioso.json; the merged Qwen2 is served by the fast path (worker/models/qwen2.py)
    engine = load_engine(WorkerConfig(adapter=str(qwen_adapter), device="cpu", fast_decode=True),
                         GenerationConfig(max_new_tokens=6))
    try:
        assert type(engine) is FastEngine and engine.model.config.model_type == "qwen2"
        assert not any("lora" in name for name, _ in engine.model.named_modules())  # merged
        [answer] = engine.generate([("print(1 + 1)", None)])
        assert 1 <= answer.tokens <= 6
    finally:
        engine.close()


def test_a_local_copy_of_the_base_is_accepted(qwen_adapter, tiny_qwen_dir, tmp_path):
    copy = shutil.copytree(tiny_qwen_dir, tmp_path / "my-copy")
    engine = load_engine(WorkerConfig(base_model=str(copy), adapter=str(qwen_adapter), device="cpu"),
                         GenerationConfig(max_new_tokens=2))
    assert engine.generate([("x = 1", None)])


def test_a_gemma_adapter_is_refused_on_qwen_and_a_qwen_adapter_on_gemma(qwen_adapter, tiny_adapter_dir,
                                                                         tiny_qwen_dir, tiny_model_dir):
    with pytest.raises(ModelError, match=f"needs the base {tiny_model_dir}") as error:
        load_engine(WorkerConfig(base_model=str(tiny_qwen_dir), adapter=str(tiny_adapter_dir), device="cpu"),
                    GenerationConfig(max_new_tokens=2))
    assert "architecture gemma3_text (this model: qwen2)" in str(error.value)
    assert f"--base-model {tiny_model_dir}" in str(error.value)
    with pytest.raises(ModelError, match="architecture qwen2 \\(this model: gemma3_text\\)"):
        load_engine(WorkerConfig(base_model=str(tiny_model_dir), adapter=str(qwen_adapter), device="cpu"),
                    GenerationConfig(max_new_tokens=2))


def test_an_older_adapter_is_checked_against_the_named_base_it_records(tiny_qwen_dir, tmp_path):
    from transformers import AutoConfig

    adapter = tmp_path / "old-gemma-adapter"
    adapter.mkdir()
    (adapter / "mafioso.json").write_text(json.dumps({"base_model": "embedded"}))  # no recorded facts
    with pytest.raises(ModelError, match="--base-model embedded") as error:
        check_adapter_base(adapter, str(tiny_qwen_dir), AutoConfig.from_pretrained(tiny_qwen_dir))
    assert "hidden_size 640 (this model: 64)" in str(error.value)


def test_named_bases_must_agree_when_both_are_named(tiny_qwen_dir, tmp_path):
    from transformers import AutoConfig

    from mafioso.core.base_model import model_facts

    config = AutoConfig.from_pretrained(tiny_qwen_dir)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    facts = model_facts(config)
    (adapter / "mafioso.json").write_text(json.dumps({"base_model": "qwen2.5-coder-0.5b",
                                                      "base": {"name": "qwen2.5-coder-0.5b", **facts}}))
    other = shutil.copytree(tiny_qwen_dir, tmp_path / "other")
    (other / BASE_MARK).write_text(json.dumps({"name": "embedded"}))
    with pytest.raises(ModelError, match="base qwen2.5-coder-0.5b \\(this model: embedded\\)"):
        check_adapter_base(adapter, str(other), config)
    (other / BASE_MARK).write_text(json.dumps({"name": "qwen2.5-coder-0.5b"}))
    check_adapter_base(adapter, str(other), config)  # same name, same facts


def test_default_adapter_is_the_one_shipped_for_the_base(tmp_path, monkeypatch, caplog, tiny_adapter_dir,
                                                         qwen_adapter):
    monkeypatch.setattr(engine_module, "SHIPPED_ADAPTERS_DIR", tmp_path)
    shutil.copytree(tiny_adapter_dir, tmp_path / "adapter")
    assert adapter_folder("default") == tmp_path / "adapter"  # embedded: mafioso/adapter
    assert adapter_folder("default", "embedded") == tmp_path / "adapter"
    with caplog.at_level(logging.WARNING, logger="mafioso.worker.engine"):
        assert adapter_folder("default", "qwen2.5-coder-0.5b") is None  # not shipped yet: the bare base
    assert "no adapter is shipped for the base qwen2.5-coder-0.5b" in caplog.text
    shutil.copytree(qwen_adapter, tmp_path / "adapter-qwen2.5-coder-0.5b")
    assert adapter_folder("default", "qwen2.5-coder-0.5b") == tmp_path / "adapter-qwen2.5-coder-0.5b"
    assert adapter_folder("default", "Qwen/Qwen2.5-Coder-0.5B-Instruct") == tmp_path / "adapter-qwen2.5-coder-0.5b"


def test_the_fast_path_serves_qwen2_unquantized(tiny_qwen_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_qwen_dir)
    assert FastEngine.supports(model, GenerationConfig(), "none")  # tests/worker/test_fast_decode_qwen2.py
    assert not FastEngine.supports(model, GenerationConfig(), "nf4")
    assert FastEngine.supports(model, GenerationConfig(do_sample=True), "none")  # on a CPU its slots sample


def test_the_shipped_gemma_adapter_is_the_default_for_embedded_and_refused_on_qwen(tiny_qwen_dir):
    from transformers import AutoConfig

    from mafioso.worker.engine import SHIPPED_ADAPTERS_DIR

    folder = adapter_folder("default")
    assert folder == SHIPPED_ADAPTERS_DIR / "adapter"
    with pytest.raises(ModelError, match="needs the base embedded.*--base-model embedded"):
        check_adapter_base(folder, str(tiny_qwen_dir), AutoConfig.from_pretrained(tiny_qwen_dir))
