"""The real QLoRA path (bitsandbytes NF4 on the CPU, PEFT, TRL) end to end on a tiny Gemma 3."""

import json

from mafioso import prompts
import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from mafioso.cli import main
from mafioso.core.config import TrainConfig
from tests.helpers import write_dataset, write_one_row_validation
from mafioso.trainer import train as train_module
from mafioso.trainer.dataset import load_samples


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory):
    """One `mafioso train` run through the CLI, shared by the assertions below."""
    root = tmp_path_factory.mktemp("train")
    data = write_dataset(root / "train.json")
    val = write_one_row_validation(root / "val.jsonl")
    config = root / "recipe.yaml"
    config.write_text("lora_r: 8\nlora_alpha: 16\nepochs: 2\nlearning_rate: 0.01\n")
    out = root / "adapter"
    rc = main(["train", "--config", str(config), "--lora-r", "4", "--base-model", str(tiny_model_dir),
               "--data", str(data), "--validation", str(val), "--output", str(out), "--logging-steps", "1",
               "--adapter-dtype", "bfloat16"])
    assert rc == 0
    return out


def test_adapter_folder_has_everything(trained):
    for name in ("adapter_config.json", "adapter_model.safetensors", "README.md", "mafioso.json",
                 "training_log.json", "loss.png"):
        assert (trained / name).is_file(), name
    assert not trained.with_name("adapter.work").exists()  # checkpoints cleaned up after success
    assert not list(trained.parent.glob(".adapter.tmp-*"))
    from safetensors.torch import load_file

    weights = load_file(trained / "adapter_model.safetensors")
    assert weights and all(w.dtype == torch.bfloat16 for w in weights.values())  # --adapter-dtype bfloat16


def test_train_tokens_per_s_leaves_out_the_epoch_end_evaluations(trained):
    """Training speed is training: the evaluations run inside ``train()`` at each epoch's end (a fifth of a
    short fast run on the GPU, 2026-12-05) are left out of it and recorded apart."""
    history = json.loads((trained / "training_log.json").read_text())
    history = history.get("log_history", history) if isinstance(history, dict) else history
    stats = json.loads((trained / "mafioso.json").read_text())["stats"]
    evals = [entry["eval_runtime"] for entry in history if "eval_runtime" in entry]
    assert len(evals) >= 2  # the epoch ends of a 2-epoch run (the final evaluation comes after train())
    assert stats["epoch_eval_s"] == pytest.approx(sum(evals[:2]), abs=0.11)
    state = type("State", (), {"log_history": [{"step": 2, "eval_runtime": 1.5}, {"step": 4, "eval_runtime": 2.0},
                                               {"step": 4, "loss": 3.0}]})()
    assert train_module.training_seconds(state, 10.0) == 6.5
    assert train_module.training_seconds(state, 10.0, since_step=2) == 8.0  # a resumed session's own
    assert train_module.checkpoint_step("out/adapter.work/checkpoint-40") == 40


def test_flags_override_yaml_and_card_records_the_run(trained):
    assert json.loads((trained / "adapter_config.json").read_text())["r"] == 4  # flag beat YAML's 8
    info = json.loads((trained / "mafioso.json").read_text())
    assert info["config"]["lora_r"] == 4 and info["config"]["learning_rate"] == 0.01  # YAML beat default
    assert info["config"]["max_grad_norm"] == 0.3 and info["config"]["lora_dropout"] == 0.05  # defaults
    assert len(info["data_files"]) == 2 and all(len(d) == 64 for d in info["data_files"].values())
    assert info["stats"]["eval_loss"] is not None and "mafioso train" in info["command"]
    assert info["prompt_format"] == prompts.PROMPT_FORMAT  # the worker warns when it serves another
    log = json.loads((trained / "training_log.json").read_text())
    assert any("eval_loss" in h for h in log["log_history"])  # evaluated each epoch
    card = (trained / "README.md").read_text()
    assert "Final losses" in card and "## Intended use" in card and ".tmp-" not in card
    assert str(trained.parent) not in card  # no path of the training machine (issue 22)


def test_adapter_loads_with_peft_and_changes_the_model(trained, tiny_model_dir):
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ids = torch.tensor([[2, 10, 11, 12]])
    with torch.no_grad():
        before = base(ids).logits
        tuned = PeftModel.from_pretrained(base, trained)
        after = tuned(ids).logits
    assert not torch.allclose(before, after)
    lora_b = [p for n, p in tuned.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b)  # every LoRA matrix was trained


def test_loss_is_masked_to_the_response(tiny_model_dir, tmp_path):
    data = write_dataset(tmp_path / "d.json")
    run = train_module.setup(TrainConfig(base_model=str(tiny_model_dir), data=[str(data)],
                                         output=str(tmp_path / "a")))
    tokenizer = run.trainer.processing_class
    rows = [run.trainer.train_dataset[i] for i in range(3)]
    batch = run.trainer.data_collator(rows)  # exactly what the model is trained on
    explanations = {s.explanation for s in load_samples([data])}
    for i, row in enumerate(rows):
        ids = row["input_ids"]
        kept = [tok for tok, lab in zip(ids, batch["labels"][i][: len(ids)].tolist()) if lab != -100]
        text = tokenizer.decode(kept)
        assert "### RESPONSE" not in text and "### CODE" not in text
        assert kept[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(kept[:-1]).strip() in explanations
        assert ids[: len(ids) - len(kept)] == prompts.encode(tokenizer, *_code_and_request(tokenizer, ids, kept))["input_ids"]


def _code_and_request(tokenizer, ids, kept):
    """Recover (code, request) of a training row from its prompt text, to re-encode it for inference."""
    prompt = tokenizer.decode(ids[: len(ids) - len(kept)], skip_special_tokens=True)
    request = prompt.split("Request: ", 1)[1].split("\n", 1)[0]
    code = prompt.split("### CODE:\n", 1)[1].rsplit("\n\n### FACTS:", 1)[0]
    return code, request


def test_interrupted_run_resumes_and_never_leaves_a_half_adapter(tiny_model_dir, tmp_path, monkeypatch):
    data = write_dataset(tmp_path / "train.json")
    cfg = TrainConfig(base_model=str(tiny_model_dir), data=[str(data)], output=str(tmp_path / "a"),
                      epochs=2, grad_accum=1, save_steps=1, logging_steps=1)
    from trl import SFTTrainer

    real_step = SFTTrainer.training_step
    calls = {"n": 0}

    def crash_on_third_step(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(SFTTrainer, "training_step", crash_on_third_step)
    with pytest.raises(KeyboardInterrupt):
        train_module.train(cfg)
    assert not (tmp_path / "a").exists()  # nothing half-written
    assert (tmp_path / "a.work" / "checkpoint-2").is_dir()

    monkeypatch.setattr(SFTTrainer, "training_step", real_step)
    calls["n"] = 0
    counting = lambda self, *a, **k: (calls.__setitem__("n", calls["n"] + 1), real_step(self, *a, **k))[1]  # noqa: E731
    monkeypatch.setattr(SFTTrainer, "training_step", counting)
    cfg.resume = True
    out = train_module.train(cfg, ["mafioso", "train", "--epochs", "2", "--resume"])
    log = json.loads((out / "training_log.json").read_text())["log_history"]
    total_steps = max(h["step"] for h in log)
    assert calls["n"] == total_steps - 2  # only the steps after checkpoint-2 ran again
    assert (out / "adapter_model.safetensors").is_file()
    card = json.loads((out / "mafioso.json").read_text())
    assert card["stats"]["resumed_from_step"] == 2
    logged = [h["loss"] for h in log if "loss" in h]
    assert len(logged) == total_steps and card["stats"]["train_loss"] == pytest.approx(sum(logged) / len(logged))
    assert card["command"] == "mafioso train --epochs 2"  # the card's command re-creates the run from scratch


def test_epoch_snapshots_keep_each_earlier_epoch_as_a_complete_adapter(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    data = write_dataset(tmp_path / "train.json")
    stale = tmp_path / "a.epochs" / "epoch-7"
    stale.mkdir(parents=True)  # an earlier run's: a new run starts without it
    cfg = TrainConfig(base_model=str(tiny_model_dir), data=[str(data)], output=str(tmp_path / "a"), epochs=3,
                      grad_accum=1, learning_rate=0.01, lora_r=4, epoch_snapshots=True, adapter_dtype="bfloat16")
    out = train_module.train(cfg, ["mafioso", "train", "--epochs", "3", "--epoch-snapshots"])
    snapshots = sorted(p.name for p in (tmp_path / "a.epochs").iterdir())
    assert snapshots == ["epoch-1", "epoch-2"]  # the last epoch is the adapter itself
    steps = json.loads((out / "mafioso.json").read_text())["stats"]["optimizer_steps"]
    weights = [load_file(folder / "adapter_model.safetensors")
               for folder in (tmp_path / "a.epochs" / "epoch-1", tmp_path / "a.epochs" / "epoch-2", out)]
    assert all(w.dtype == torch.bfloat16 for w in weights[0].values())
    assert not any(torch.equal(weights[0][k], weights[2][k]) for k in weights[0] if "lora_B" in k)  # it trained on
    for epoch in (1, 2):
        folder = tmp_path / "a.epochs" / f"epoch-{epoch}"
        info = json.loads((folder / "mafioso.json").read_text())
        assert info["stats"]["epoch"] == epoch and info["stats"]["optimizer_steps"] == steps * epoch // 3
        assert info["stats"]["eval_loss"] is not None and info["base_model"] == str(tiny_model_dir)
        assert f"after epoch {epoch} of 3 (" in (folder / "README.md").read_text()
        PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model_dir), folder)  # it loads
    assert not list((tmp_path / "a.epochs").glob(".epoch-*.tmp-*"))


def test_a_full_disk_while_saving_is_one_sentence_and_keeps_the_old_adapter(tmp_path):
    import errno
    from types import SimpleNamespace

    from mafioso.core.errors import ConfigError

    output = tmp_path / "adapter"
    output.mkdir()
    (output / "adapter_model.safetensors").write_bytes(b"the old adapter")

    def full_disk(folder):
        raise OSError(errno.ENOSPC, "No space left on device")

    run = SimpleNamespace(cfg=TrainConfig(output=str(output)), trainer=SimpleNamespace(
        model=SimpleNamespace(save_pretrained=full_disk)))
    with pytest.raises(ConfigError, match="no space left .* the adapter already in .* is intact"):
        train_module.save(run, stats={}, command=["mafioso", "train"])
    assert (output / "adapter_model.safetensors").read_bytes() == b"the old adapter"
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]  # no half-written temp folder left behind


def test_liger_kernels_are_asked_of_trl_on_a_gpu_and_refused_clearly_elsewhere(monkeypatch):
    from mafioso.core.errors import ConfigError

    cfg = TrainConfig(data=["x.json"], liger_kernel=True)
    with pytest.raises(ConfigError, match="--liger-kernel needs a CUDA GPU"):
        train_module._device_settings(cfg, cuda=False)
    found = train_module.importlib.util.find_spec  # the package is an extra: absent here, present on a GPU box
    monkeypatch.setattr(train_module.importlib.util, "find_spec", lambda name: None if name == "liger_kernel"
                        else found(name))
    with pytest.raises(ConfigError, match=r"pip install 'mafioso\[liger\]'"):
        train_module._device_settings(cfg, cuda=True)
    monkeypatch.setattr(train_module.importlib.util, "find_spec", lambda name: object())
    args, _ = train_module._device_settings(cfg, cuda=True)
    assert args["use_liger_kernel"] is True and args["bf16"] is True
    args, _ = train_module._device_settings(TrainConfig(data=["x.json"]), cuda=True)
    assert args["use_liger_kernel"] is False  # off unless asked: the seed's recipe is unchanged


def test_a_diverging_run_stops_with_one_sentence_and_writes_nothing(tiny_model_dir, tmp_path):
    from mafioso.core.errors import TrainingDiverged

    data = write_dataset(tmp_path / "train.json")
    output = tmp_path / "a"
    output.mkdir()
    (output / "adapter_model.safetensors").write_bytes(b"the old adapter")
    # an absurd learning rate: the first update overflows the weights, the next step's loss and gradients are NaN
    cfg = TrainConfig(base_model=str(tiny_model_dir), data=[str(data)], output=str(output), epochs=3,
                      grad_accum=1, learning_rate=1e30, lora_r=4, logging_steps=1, epoch_snapshots=True)
    with pytest.raises(TrainingDiverged, match=r"training diverged at step \d+ of \d+ .*grad_norm is nan.*"
                                               r"Nothing was written .*lower --learning-rate \(this run: 1e\+30\)"):
        train_module.train(cfg)
    assert (output / "adapter_model.safetensors").read_bytes() == b"the old adapter"
    assert not (tmp_path / "a.epochs").exists()  # no NaN snapshot either
