"""bench/bench_worker.py's random-weights base: an architecture's speed measured from its config and tokenizer."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from tests.bench import load


@pytest.fixture(scope="module")
def bench_worker():
    module = load("bench_worker")
    return module


@pytest.fixture
def config_and_tokenizer(tiny_qwen_dir, tmp_path):
    """The tiny Qwen2's folder without its weights: what the GPU bundle holds of Qwen2.5-Coder-0.5B."""
    folder = tmp_path / "qwen-config"
    shutil.copytree(tiny_qwen_dir, folder, ignore=shutil.ignore_patterns("*.safetensors"))
    assert not list(folder.glob("*.safetensors"))
    return folder


def test_random_weights_build_the_architecture_from_its_config(bench_worker, config_and_tokenizer, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mafioso.worker.fast_engine import FastEngine
    from mafioso.core.config import GenerationConfig

    folder = Path(bench_worker.random_base(str(config_and_tokenizer), seed=1, target=tmp_path / "a"))
    model = AutoModelForCausalLM.from_pretrained(folder)
    source = json.loads((config_and_tokenizer / "config.json").read_text())
    assert model.config.model_type == "qwen2" and model.config.hidden_size == source["hidden_size"]
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied, as the config says
    assert set(model.model.norm.weight.tolist()) == {-1.0, 1.0}
    assert model.model.layers[0].self_attn.q_proj.weight.std() > 0  # initialised, not zeros
    assert model.generation_config.eos_token_id == json.loads(
        (config_and_tokenizer / "generation_config.json").read_text())["eos_token_id"]  # Qwen's two ends
    assert AutoTokenizer.from_pretrained(folder).eos_token == "<|im_end|>"
    assert FastEngine.supports(model, GenerationConfig(), "none")
    again = AutoModelForCausalLM.from_pretrained(bench_worker.random_base(str(config_and_tokenizer), seed=1,
                                                                          target=tmp_path / "b"))
    assert torch.equal(again.model.embed_tokens.weight, model.model.embed_tokens.weight)  # seeded


def test_random_weights_need_a_folder_with_a_config(bench_worker, tmp_path, capsys):
    with pytest.raises(SystemExit):
        bench_worker.parse_args(["--base-model", str(tmp_path), "--random-weights"])
    assert "--random-weights needs --base-model FOLDER holding a config.json" in capsys.readouterr().err


def test_sampled_rows_send_each_request_its_sampling(bench_worker):
    """``--sampled T``: the rows drive the worker with requests sampled at T, as the API's temperature does."""
    import asyncio
    from types import SimpleNamespace

    from mafioso.worker.sampling import Sampling

    seen = []

    class Worker:
        engine = SimpleNamespace()  # no decode stats

        async def explain(self, code, sampling=None):
            seen.append(sampling)
            return SimpleNamespace(latency_s=0.01, tokens=5)

    row = asyncio.run(bench_worker.run_worker(Worker(), 3, 2, "worker-T0.7", Sampling(0.7, 0.9)))
    assert seen == [Sampling(0.7, 0.9)] * 3 and (row["name"], row["requests"], row["tokens"]) == ("worker-T0.7", 3, 15)
    assert bench_worker.parse_args(["--sampled", "0.7"]).sampled == 0.7


def test_also_cut_runs_every_level_again_with_the_claim_cut_the_other_way(bench_worker, tiny_model_dir, monkeypatch):
    """``--also-cut``: the same worker serves each level again with ``cut_unsupported`` flipped (on where the
    configuration had it off), then the configuration's own setting is back."""
    import asyncio

    from mafioso.core.config import GenerationConfig, WorkerConfig

    seen = []

    async def run_worker(worker, requests, concurrency, name="worker", sampling=None):
        seen.append((name, concurrency, worker.engine.gen.cut_unsupported))
        return {"name": name, "concurrency": concurrency}

    monkeypatch.setattr(bench_worker, "run_worker", run_worker)
    monkeypatch.setattr(bench_worker, "SNIPPETS", [])
    cfg = WorkerConfig(base_model=str(tiny_model_dir), adapter="none", fast_decode=False)
    gen = GenerationConfig(max_new_tokens=4, cut_unsupported="off")
    rows, _ = asyncio.run(bench_worker.measure_worker(cfg, gen, {1: 2, 2: 2}, "worker", also_cut=True))
    assert [row["name"] for row in rows] == ["worker", "worker", "worker-cuton", "worker-cuton"]
    assert seen[-4:] == [("worker", 1, "off"), ("worker", 2, "off"), ("worker-cuton", 1, "on"),
                         ("worker-cuton", 2, "on")]
    args = bench_worker.parse_args(["--cut-unsupported", "on", "--also-cut"])
    assert (args.cut_unsupported, args.also_cut) == ("on", True)
