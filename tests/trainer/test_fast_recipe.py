"""`mafioso train --recipe fast` (issue 24): bf16/fp32 base without 4-bit weights, packed padding-free batches, on a
tiny Gemma 3 on the CPU; a packed batch scores each of its rows exactly as that row alone (no cross-row attention)."""

import json

import pytest
import torch

from mafioso.cli import main
from mafioso.core.config import RECIPES, GenerationConfig, TrainConfig, WorkerConfig, build, from_args
from mafioso.core.errors import ConfigError
from mafioso.trainer import train as train_module
from mafioso.trainer.dataset import load_samples, tokenize
from tests.helpers import SNIPPETS, write_dataset


def test_a_recipe_sets_the_starting_values_and_yaml_and_flags_still_win(tmp_path):
    fast = build(TrainConfig, {"recipe": "fast"})
    assert (fast.quantization, fast.gradient_checkpointing, fast.packing, fast.attn_implementation) == \
        ("none", False, True, "auto")
    assert build(TrainConfig, {}).quantization == "nf4" and build(TrainConfig, {}).recipe == "qlora"
    assert build(TrainConfig, {"recipe": "fast"}, {"quantization": "nf4"}).quantization == "nf4"  # a flag wins
    yaml = tmp_path / "r.yaml"
    yaml.write_text("recipe: fast\nbatch_size: 8\n")
    import argparse

    parser = argparse.ArgumentParser()
    from mafioso.core.config import add_arguments

    add_arguments(parser, TrainConfig)
    cfg = from_args(TrainConfig, parser.parse_args(["--packing", "--no-packing"]), str(yaml))
    assert (cfg.recipe, cfg.batch_size, cfg.packing, cfg.quantization) == ("fast", 8, False, "none")
    cfg = from_args(TrainConfig, parser.parse_args(["--recipe", "qlora"]), str(yaml))  # the flag's recipe wins
    assert (cfg.recipe, cfg.batch_size, cfg.quantization) == ("qlora", 8, "nf4")
    with pytest.raises(ConfigError, match="recipe must be one of qlora, fast, not 'turbo'"):
        build(TrainConfig, {"recipe": "turbo"})
    with pytest.raises(ConfigError, match="attn_implementation must be one of auto, eager, sdpa"):
        TrainConfig(attn_implementation="flash")
    assert set(RECIPES["fast"]) <= {f for f in TrainConfig.__dataclass_fields__}  # every value names a setting


def _fast(tiny_model_dir, tmp_path, **overrides) -> train_module.Run:
    data = write_dataset(tmp_path / "d.json")
    return train_module.setup(build(TrainConfig, {"recipe": "fast", "base_model": str(tiny_model_dir),
                                                  "data": [str(data)], "output": str(tmp_path / "a"), **overrides}))


def _loss_and_tokens(trainer, batch) -> tuple[float, int]:
    """The trainer's own loss (its fused LM head, completion tokens only) on one collated batch, in eval mode."""
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, dict(batch))
    return loss.item(), int((batch["labels"] != -100).sum())


@pytest.mark.parametrize(("base", "asked", "used"), [("tiny_model_dir", "auto", "sdpa"),
                                                     ("tiny_qwen_dir", "auto", "eager"),
                                                     ("tiny_qwen_dir", "sdpa", "sdpa")])
def test_the_fast_recipe_trains_qwen2_with_eager_attention_unless_told(base, asked, used, request, tmp_path):
    """On the H200, Qwen2.5-Coder 0.5B's packed bf16 rows gave NaN gradients with sdpa (three runs) and trained
    with eager past the same batch: `auto`, the fast recipe's, picks eager for Qwen2 and sdpa elsewhere; the
    card records what was used, and a setting asked for is kept."""
    run = _fast(request.getfixturevalue(base), tmp_path, attn_implementation=asked)
    assert run.cfg.attn_implementation == used
    assert run.trainer.model.config._attn_implementation == used


@pytest.mark.parametrize("base", ["tiny_model_dir", "tiny_qwen_dir"])
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_a_packed_batch_scores_each_row_as_it_scores_alone(base, request, tmp_path, attention):
    run = _fast(request.getfixturevalue(base), tmp_path, attn_implementation=attention, max_length=1500)
    trainer = run.trainer
    trainer.model.eval()  # no LoRA dropout: the two computations must see the same weights
    packed = max(trainer.train_dataset, key=lambda row: len(row["seq_lengths"]))
    lengths = packed["seq_lengths"]
    assert len(lengths) >= 3 and max(lengths) > 128  # several rows, and rows longer than the sliding window
    batch = trainer.data_collator([packed])  # exactly what the trainer feeds the model: one row, no mask
    assert "attention_mask" not in batch and int((batch["position_ids"] == 0).sum()) == len(lengths)
    loss, tokens = _loss_and_tokens(trainer, batch)

    starts = [sum(lengths[:i]) for i in range(len(lengths))]
    rows = [{"input_ids": packed["input_ids"][s:s + n], "labels": packed["labels"][s:s + n]}
            for s, n in zip(starts, lengths)]
    # each packed row is a whole row as prompts/ renders it, its loss on the answer alone
    rendered, _ = tokenize(load_samples([tmp_path / "d.json"]), trainer.processing_class, 1500)
    by_ids = {tuple(r["input_ids"]): r["completion_mask"] for r in rendered}
    for row in rows:
        mask = by_ids[tuple(row["input_ids"])]
        assert [label != -100 for label in row["labels"]] == [bool(m) for m in mask]
    alone = [_loss_and_tokens(trainer, trainer.data_collator([row])) for row in rows]
    assert sum(n for _, n in alone) == tokens
    assert loss == pytest.approx(sum(l * n for l, n in alone) / tokens, rel=1e-5)

    # the control: one running position over the whole pack lets every row see the rows before it
    leaky = {**batch, "position_ids": torch.arange(batch["input_ids"].shape[1])[None]}
    assert abs(_loss_and_tokens(trainer, leaky)[0] - loss) > 1e-4  # the match above allows ~6e-5


@pytest.mark.parametrize("base", ["tiny_model_dir", "tiny_qwen_dir"])
def test_a_batch_of_packs_keeps_each_pack_a_row_and_scores_as_trl_joined_it(base, request, tmp_path):
    """TRL's padding-free collator joins a batch's packs into one sequence, whose square mask costs sdpa and eager
    attention 8x the work at 8 packs (the H100 profile); the trainer's collator keeps each pack a row, same loss."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from mafioso.trainer.packing import PackRows

    run = _fast(request.getfixturevalue(base), tmp_path, attn_implementation="sdpa", max_length=1000)
    trainer = run.trainer
    trainer.model.eval()
    assert isinstance(trainer.data_collator, PackRows)
    packs = list(trainer.train_dataset)
    widths = [len(pack["input_ids"]) for pack in packs]
    assert len(set(widths)) > 1 and max(len(pack["seq_lengths"]) for pack in packs) >= 2  # padding, several rows
    batch = trainer.data_collator(packs)
    assert set(batch) == {"input_ids", "labels", "position_ids"}
    assert batch["input_ids"].shape == (len(packs), max(widths))
    assert bool((batch["position_ids"][:, 0] == 0).all())  # every pack starts a row at position 0
    loss, tokens = _loss_and_tokens(trainer, batch)

    joined = DataCollatorForLanguageModeling(pad_token_id=trainer.data_collator.pad_token_id, padding_free=True)
    joined_batch = joined(packs)
    assert joined_batch["input_ids"].shape == (1, sum(widths))  # TRL's: the whole batch one sequence
    joined_loss, joined_tokens = _loss_and_tokens(trainer, joined_batch)
    assert tokens == joined_tokens and loss == pytest.approx(joined_loss, rel=1e-5)


def test_both_recipes_compute_the_same_eval_loss_for_the_same_weights(tiny_model_dir, tmp_path):
    """Evaluation stays unpacked, in batches of eval_batch_size rows, so a recipe's eval loss measures its weights,
    not its batching: before any step (LoRA starts as the identity) the two recipes score the base alike."""
    data = write_dataset(tmp_path / "d.json", SNIPPETS[:3])
    val = write_dataset(tmp_path / "v.json", SNIPPETS[3:])  # 5 rows: batches of 3 and 2
    common = {"base_model": str(tiny_model_dir), "data": [str(data)], "validation": [str(val)],
              "eval_batch_size": 3, "output": str(tmp_path / "a")}
    fast = train_module.setup(build(TrainConfig, {"recipe": "fast", **common}))
    assert "seq_lengths" not in fast.trainer.eval_dataset.column_names  # rows, not packs
    assert fast.trainer.args.per_device_eval_batch_size == 3 and fast.trainer.args.per_device_train_batch_size == 1
    assert len(fast.trainer.train_dataset) < fast.counts["train"]  # the training rows went into fewer packs
    padded = train_module.setup(build(TrainConfig, {"recipe": "qlora", "quantization": "none", **common}))
    assert "attention_mask" in padded.trainer.data_collator([padded.trainer.eval_dataset[0]])  # padded batches
    assert fast.trainer.evaluate()["eval_loss"] == pytest.approx(padded.trainer.evaluate()["eval_loss"], rel=1e-5)


def test_the_fast_recipe_writes_an_adapter_the_worker_serves(tiny_model_dir, tmp_path):
    from mafioso.worker.engines import load_engine

    data = write_dataset(tmp_path / "train.json")
    out = tmp_path / "adapter"
    rc = main(["train", "--recipe", "fast", "--base-model", str(tiny_model_dir), "--data", str(data),
               "--output", str(out), "--lora-r", "4", "--epochs", "2", "--learning-rate", "0.01",
               "--logging-steps", "1"])
    assert rc == 0
    info = json.loads((out / "mafioso.json").read_text())
    assert info["config"]["recipe"] == "fast" and info["config"]["quantization"] == "none"
    assert info["config"]["packing"] is True and info["config"]["lora_r"] == 4  # the flag over the recipe
    stats = info["stats"]
    assert stats["eval_loss"] is not None and stats["train_tokens_per_s"] > 0
    losses = [h["loss"] for h in json.loads((out / "training_log.json").read_text())["log_history"] if "loss" in h]
    assert len(losses) == stats["optimizer_steps"] and losses[-1] < losses[0]  # it learned

    engine = load_engine(WorkerConfig(adapter=str(out), device="cpu"), GenerationConfig(max_new_tokens=4))
    [result] = engine.generate([("print(1)", None)])
    assert 1 <= result.tokens <= 4


def test_max_steps_cuts_the_run_and_counts_the_tokens_it_fed(tiny_model_dir, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    data = write_dataset(tmp_path / "d.json")
    out = train_module.train(build(TrainConfig, {"recipe": "fast", "base_model": str(tiny_model_dir),
                                                 "data": [str(data)], "output": str(run_dir / "a"), "lora_r": 4,
                                                 "max_steps": 1, "batch_size": 1}))
    stats = json.loads((out / "mafioso.json").read_text())["stats"]
    assert stats["optimizer_steps"] == 1
    assert 0 < stats["train_tokens"] <= 2048  # one pack of at most max_length tokens, not the epochs' tokens


def test_a_packed_run_cut_by_max_steps_counts_every_pack_of_its_batches(tiny_model_dir, tmp_path):
    # TRL tallies the width of position_ids, one row of a batch of packs (trainer/packing.py): a run of exactly
    # one epoch by max_steps must count that epoch's tokens, as the run of one epoch does
    data = write_dataset(tmp_path / "d.json")
    flags = {"recipe": "fast", "base_model": str(tiny_model_dir), "data": [str(data)], "lora_r": 4,
             "batch_size": 2, "max_length": 640}

    def stats(name: str, **more) -> dict:
        out = train_module.train(build(TrainConfig, {**flags, "output": str(tmp_path / name), **more}))
        return json.loads((out / "mafioso.json").read_text())["stats"]

    epoch = stats("epoch", epochs=1)
    assert epoch["optimizer_steps"] >= 2  # more than one batch of packs
    cut = stats("cut", max_steps=epoch["optimizer_steps"])
    assert cut["train_tokens"] == epoch["train_tokens"] > 2 * 640
