"""A persona is data: its instruction and voice markers under prompts/personas/<name>/ (issue 23)."""

import json

import pytest

from mafioso import prompts
from mafioso.core.config import TrainConfig
from mafioso.core.errors import ConfigError, ModelError
from mafioso.core.text_checks import PERSONA_MARKERS, persona_markers
from mafioso.trainer.dataset import load_samples
from mafioso.worker.engine import adapter_persona


def test_the_shipped_personas_and_their_prompts():
    assert prompts.personas() == ["mafioso", "noir"]
    mafioso, noir = prompts.render_prompt("x = 1", "why?"), prompts.render_prompt("x = 1", "why?", "noir")
    assert mafioso.startswith("### INSTRUCTION:\nYou are Mafioso") and "film-noir" in noir
    # only the instruction differs: request, code and facts sheet are the same bytes
    assert mafioso.split("Request:", 1)[1] == noir.split("Request:", 1)[1]
    assert prompts.persona().markers == PERSONA_MARKERS and "capisce" in PERSONA_MARKERS
    assert persona_markers("Case closed, sweetheart.", prompts.persona("noir").markers)
    assert not persona_markers("Case closed.", PERSONA_MARKERS)
    with pytest.raises(ValueError, match="unknown persona 'pirate'.*mafioso, noir"):
        prompts.persona("pirate")


def test_training_names_a_persona_that_exists():
    assert TrainConfig(persona="noir").persona == "noir"
    with pytest.raises(ConfigError, match="--persona must be one of mafioso, noir"):
        TrainConfig(persona="pirate")


def test_another_personas_data_uses_the_neutral_field_name(tmp_path):
    path = tmp_path / "noir.json"
    path.write_text(json.dumps({"a": {"prompt": "p", "code": "x = 1", "explanation": "It sets x, see. Case closed."}}))
    [sample] = load_samples([path])
    assert sample.explanation == "It sets x, see. Case closed."


def test_an_adapter_is_served_in_the_persona_it_was_trained_in(tmp_path):
    assert adapter_persona(None) == "mafioso"
    (tmp_path / "mafioso.json").write_text(json.dumps({"config": {"persona": "noir"}}))
    assert adapter_persona(tmp_path) == "noir"
    (tmp_path / "mafioso.json").write_text(json.dumps({"config": {"lora_r": 16}}))  # before personas
    assert adapter_persona(tmp_path) == "mafioso"
    (tmp_path / "mafioso.json").write_text(json.dumps({"config": {"persona": "pirate"}}))
    with pytest.raises(ModelError, match="persona 'pirate'.*prompts/personas/pirate"):
        adapter_persona(tmp_path)


def test_a_shipped_persona_is_found_by_name_and_one_without_an_adapter_is_a_clear_error(tmp_path, monkeypatch):
    import json

    from mafioso.worker import engine
    from mafioso.worker.engine import adapter_folder

    noir = adapter_folder("noir")  # mafioso/adapter-noir, trained in that voice
    assert noir.name == "adapter-noir"
    assert json.loads((noir / "mafioso.json").read_text())["config"]["persona"] == "noir"
    monkeypatch.setattr(engine, "SHIPPED_ADAPTERS_DIR", tmp_path)  # an install without it
    with pytest.raises(ModelError, match="persona 'noir' has no shipped adapter yet.*--persona noir"):
        adapter_folder("noir")
