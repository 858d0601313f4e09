"""DecoderSettings: the fast engine's tuning as one value, built once from the config (no model needed)."""

import dataclasses

import pytest

from mafioso.core.config import GenerationConfig, WorkerConfig
from mafioso.worker.decoder_settings import CPU_SLOTS, GPU_LONG_SLOTS, DecoderSettings, slot_length


def test_of_gives_the_worker_s_settings_per_device():
    cfg, gen = WorkerConfig(max_batch_size=64, compile_decode=True, compile_scope="layer"), GenerationConfig()
    cuda, cpu = DecoderSettings.of(cfg, gen, "cuda"), DecoderSettings.of(cfg, gen, "cpu")
    assert (cuda.slots, cuda.long_slots, cuda.compile, cuda.compile_scope) == (64, GPU_LONG_SLOTS, True, "layer")
    assert (cpu.slots, cpu.long_slots, cpu.compile) == (CPU_SLOTS, None, False)  # capped; compiled on CUDA only
    assert cuda.max_len == cpu.max_len == slot_length(cfg, gen)
    assert DecoderSettings.of(dataclasses.replace(cfg, max_batch_size=4), gen, "cpu").slots == 4


def test_the_slot_split_follows_long_slots():
    gen = GenerationConfig(max_new_tokens=100)
    split = DecoderSettings(slots=64, max_len=4096, long_slots=8, short_prompt_tokens=1000).slot_split(gen)
    assert split == {"short_slots": 56, "short_len": 1000 + 100 + 1}
    for every_slot_long in (None, 0, 64):
        assert DecoderSettings(slots=64, max_len=4096, long_slots=every_slot_long).slot_split(gen)["short_slots"] == 0


def test_settings_are_frozen_and_nonsense_is_refused():
    settings = DecoderSettings(slots=4, max_len=1024)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.slots = 8
    with pytest.raises(ValueError, match="slot"):
        DecoderSettings(slots=0, max_len=1024)
    with pytest.raises(ValueError, match="admit_every"):
        DecoderSettings(slots=4, max_len=1024, admit_every=0)
    with pytest.raises(ValueError, match="switch_interval_s"):
        DecoderSettings(slots=4, max_len=1024, switch_interval_s=0)


def test_load_engine_builds_the_fast_engine_from_the_config_and_the_tuning(tiny_model_dir):
    from mafioso.worker.engines import load_engine

    cfg = WorkerConfig(base_model=str(tiny_model_dir), adapter="none", device="cpu", dtype="float32",
                       max_batch_size=3)
    gen = GenerationConfig(max_new_tokens=4)
    fast = load_engine(cfg, gen, tuning={"admit_every": 2, "share_prefix": False})
    try:
        assert fast.settings == dataclasses.replace(DecoderSettings.of(cfg, gen, "cpu"), admit_every=2,
                                                    share_prefix=False)
        assert fast.admit_every == 2 and fast.decoder.slots == 3 and not fast.decoder.prefix
    finally:
        fast.close()
