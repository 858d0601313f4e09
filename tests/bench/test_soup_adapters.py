"""bench/soup_adapters.py: the soup's change to each layer is the mean of its parts' changes (exact), or that
mean's best low-rank approximation; the soup loads in peft as any adapter does."""

import json

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM

from tests.bench import load


def _adapter(tiny_model_dir, folder, seed, r=4, alpha=8):
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    lora = LoraConfig(r=r, lora_alpha=alpha, target_modules=["q_proj", "v_proj"], init_lora_weights=False,
                      task_type="CAUSAL_LM")
    get_peft_model(model, lora).save_pretrained(folder)
    (folder / "mafioso.json").write_text(json.dumps({"base_model": str(tiny_model_dir), "config": {"seed": seed}}))
    return folder


def _merged_q(tiny_model_dir, folder):
    model = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    merged = PeftModel.from_pretrained(model, folder).merge_and_unload()
    return merged.model.layers[0].self_attn.q_proj.weight.detach()


def test_the_soup_changes_each_layer_by_the_mean_of_its_parts(tiny_model_dir, tmp_path):
    bench = load("soup_adapters")
    parts = [_adapter(tiny_model_dir, tmp_path / "a", 1), _adapter(tiny_model_dir, tmp_path / "b", 2, r=2, alpha=8)]
    assert bench.main([*map(str, parts), "--out", str(tmp_path / "soup")]) == 0
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir)).model.layers[0].self_attn.q_proj.weight
    changes = [_merged_q(tiny_model_dir, part) - base for part in parts]
    soup = _merged_q(tiny_model_dir, tmp_path / "soup") - base
    assert torch.allclose(soup, (changes[0] + changes[1]) / 2, atol=1e-6)
    assert not torch.allclose(soup, changes[0], atol=1e-3)  # not just the first
    card = json.loads((tmp_path / "soup" / "mafioso.json").read_text())
    assert card["soup"]["rank"] == 6 and card["soup"]["seeds"] == [1, 2]
    assert not (tmp_path / "soup.partial").exists()


def test_a_truncated_soup_keeps_the_largest_directions(tiny_model_dir, tmp_path):
    bench = load("soup_adapters")
    one = _adapter(tiny_model_dir, tmp_path / "a", 1)
    assert bench.main([str(one), str(one), "--out", str(tmp_path / "soup"), "--rank", "4"]) == 0  # rank 8 -> 4
    config = json.loads((tmp_path / "soup" / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["lora_alpha"] == 8
    assert torch.allclose(_merged_q(tiny_model_dir, tmp_path / "soup"), _merged_q(tiny_model_dir, one), atol=1e-5)


def test_adapters_of_other_layers_are_refused():
    bench = load("soup_adapters")
    a = {"x.lora_A.weight": torch.ones(2, 3), "x.lora_B.weight": torch.ones(3, 2)}
    b = {"y.lora_A.weight": torch.ones(2, 3), "y.lora_B.weight": torch.ones(3, 2)}
    config = {"r": 2, "lora_alpha": 4, "target_modules": ["x"]}
    with pytest.raises(ValueError, match="same layers"):
        bench.soup([a, b], [config, config])
