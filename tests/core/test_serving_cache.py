"""The merged serving weights kept on disk (issue 21, cold start): keyed by what they are made of, loaded
instead of merging again, rebuilt when broken, and the same model as a fresh merge."""

import shutil

import pytest
import torch
from peft import PeftModel
from peft.tuners.tuners_utils import BaseTuner

from mafioso.core import serving_cache
from mafioso.worker.engines import load_engine
from mafioso.core.config import GenerationConfig, WorkerConfig

PAIRS = [("print(1)", None), ("def f(x):\n    return x * 2\n", "why?")]


@pytest.fixture
def cache(monkeypatch, tmp_path):
    """An empty cache folder of this test's own."""
    monkeypatch.setenv("MAFIOSO_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def merges(monkeypatch):
    """The PEFT merges done, counted by spies on loading the adapter and merging it (``BaseTuner`` holds
    ``merge_and_unload`` for every PEFT method)."""
    calls = []
    merge, adapt = BaseTuner.merge_and_unload, PeftModel.from_pretrained
    monkeypatch.setattr(BaseTuner, "merge_and_unload", lambda self, *a, **k: calls.append(1) or merge(self, *a, **k))
    monkeypatch.setattr(PeftModel, "from_pretrained", lambda *a, **k: calls.append(0) or adapt(*a, **k))
    return calls


def load(adapter, dtype="float32", notes=None):
    cfg = WorkerConfig(adapter=str(adapter), device="cpu", dtype=dtype, fast_decode=False)
    return load_engine(cfg, GenerationConfig(max_new_tokens=8), note=(notes if notes is not None else []).append)


def test_the_key_changes_with_the_adapter_and_the_dtype(tmp_path, tiny_model_dir, tiny_adapter_dir):
    base = str(tiny_model_dir)
    key = serving_cache.key(base, tiny_adapter_dir, torch.float32)
    assert serving_cache.key(base, tiny_adapter_dir, torch.float32) == key
    assert serving_cache.key(base, tiny_adapter_dir, torch.bfloat16) != key
    other = tmp_path / "other"
    shutil.copytree(tiny_adapter_dir, other)
    assert serving_cache.key(base, other, torch.float32) == key  # the same files elsewhere: the same model
    config = other / "adapter_config.json"
    config.write_text(config.read_text().replace('"lora_alpha": 8', '"lora_alpha": 16'))
    assert serving_cache.key(base, other, torch.float32) != key
    shutil.copy(tiny_adapter_dir / "adapter_config.json", config)
    weights = other / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of one LoRA weight
    weights.write_bytes(bytes(data))
    assert serving_cache.key(base, other, torch.float32) != key
    assert serving_cache.key("another/base", tiny_adapter_dir, torch.float32) != key


def test_a_second_load_uses_the_cached_merge(cache, merges, tiny_adapter_dir):
    notes = []
    fresh = load(tiny_adapter_dir, notes=notes)
    assert merges == [0, 1] and notes == ["loading the model (first run converts it once)…"]
    [entry] = (cache / "merged").iterdir()
    assert (entry / serving_cache.MARK).is_file() and (entry / "model.safetensors").is_file()
    notes.clear()
    cached = load(tiny_adapter_dir, notes=notes)
    assert merges == [0, 1]  # no PEFT load or merge the second time
    assert notes == ["loading the cached merged model…"]
    assert type(cached.model) is type(fresh.model) and cached.model.dtype is torch.float32
    fresh_weights, cached_weights = fresh.model.state_dict(), cached.model.state_dict()
    assert fresh_weights.keys() == cached_weights.keys()
    assert all(torch.equal(fresh_weights[name], cached_weights[name]) for name in fresh_weights)
    assert cached.eos_ids == fresh.eos_ids
    prompt_ids = [fresh.tokenizer(code)["input_ids"] for code, _ in PAIRS]
    assert cached.decode(prompt_ids) == fresh.decode(prompt_ids)  # the same greedy tokens
    assert cached.generate(PAIRS) == fresh.generate(PAIRS)


def test_each_dtype_has_its_own_entry(cache, merges, tiny_adapter_dir):
    load(tiny_adapter_dir, dtype="float32")
    bf16 = load(tiny_adapter_dir, dtype="bfloat16")
    assert merges.count(1) == 2 and len(list((cache / "merged").iterdir())) == 2
    assert bf16.model.dtype is torch.bfloat16
    fresh = bf16.model.state_dict()
    cached = load(tiny_adapter_dir, dtype="bfloat16").model.state_dict()
    assert merges.count(1) == 2
    assert all(torch.equal(fresh[name], cached[name]) for name in fresh)


@pytest.mark.parametrize("damage", ["truncated", "garbled", "unmarked"])
def test_a_broken_entry_is_rebuilt(cache, merges, tiny_adapter_dir, damage):
    fresh = load(tiny_adapter_dir)
    [entry] = (cache / "merged").iterdir()
    weights = entry / "model.safetensors"
    if damage == "truncated":  # a copy cut short
        weights.write_bytes(weights.read_bytes()[:1000])
    elif damage == "garbled":  # the right size, a broken header
        weights.write_bytes(b"\xff" * weights.stat().st_size)
    else:  # killed before the mark was written (save() renames only marked folders; a copy by hand may not)
        (entry / serving_cache.MARK).unlink()
    rebuilt = load(tiny_adapter_dir)
    assert merges.count(1) == 2
    assert serving_cache.load(entry, "cpu", torch.float32) is not None  # whole again
    assert rebuilt.generate(PAIRS) == fresh.generate(PAIRS)
    assert not [p for p in (cache / "merged").iterdir() if p.name.startswith(".")]  # no temp folder left


def test_a_failed_save_costs_only_the_next_merge(cache, merges, tiny_adapter_dir, monkeypatch):
    def full_disk(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(load(tiny_adapter_dir).model), "save_pretrained", full_disk)
    shutil.rmtree(cache / "merged")
    engine = load(tiny_adapter_dir)
    assert engine.generate(PAIRS[:1])
    assert list((cache / "merged").iterdir()) == []  # nothing half-written left behind
