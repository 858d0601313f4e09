"""The one settings loader (mafioso.core.settings): defaults → environment / .env → flags, for every section."""

import argparse

import pytest

from mafioso.core.config import DiscordConfig, GenerationConfig, PathsConfig, WorkerConfig
from mafioso.core.errors import ConfigError
from mafioso.core.settings import load

pytestmark = pytest.mark.usefixtures("no_chat_env")  # the developer's variables and .env stay out


def test_flags_beat_the_environment_which_beats_the_defaults(monkeypatch):
    monkeypatch.setenv("MAFIOSO_QUANTIZATION", "nf4")
    monkeypatch.setenv("MAFIOSO_QUEUE_SIZE", "")  # empty counts as unset
    cfg = load(WorkerConfig, argparse.Namespace(quantization="int8", verbose=True))  # not a field: ignored
    assert (cfg.quantization, cfg.queue_size) == ("int8", WorkerConfig.queue_size)
    assert load(WorkerConfig).quantization == "nf4"
    assert load(GenerationConfig, {"stop_loops": False}, env={"MAFIOSO_STOP_LOOPS": "true"}).stop_loops is False


def test_dotenv_fills_in_what_the_environment_leaves_unset(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("MAFIOSO_MAX_NEW_TOKENS=33\nDISCORD_COOLDOWN=4\nMAFIOSO_TOP_P=0.5\n")
    monkeypatch.setenv("MAFIOSO_TOP_P", "0.8")
    gen = load(GenerationConfig)
    assert (gen.max_new_tokens, gen.top_p) == (33, 0.8) and load(DiscordConfig).cooldown == 4.0


def test_a_bad_value_names_the_setting(monkeypatch):
    monkeypatch.setenv("MAFIOSO_MAX_BATCH_SIZE", "many")
    with pytest.raises(ConfigError, match="MAFIOSO_\\* / flags: max_batch_size: expected int, got 'many'"):
        load(WorkerConfig)


def test_the_cache_folder_is_a_setting_read_by_the_loader(tmp_path, monkeypatch):
    from mafioso.core.base_model import wheels_folder
    from mafioso.core.files import cache_dir

    monkeypatch.setenv("MAFIOSO_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MAFIOSO_WHEELS", raising=False)
    assert cache_dir() == tmp_path / "cache" and load(PathsConfig).cache == str(tmp_path / "cache")
    assert wheels_folder() is None
    monkeypatch.setenv("MAFIOSO_CACHE", "")
    assert cache_dir().parts[-2:] == (".cache", "mafioso")


def test_nothing_but_the_loader_reads_the_environment():
    """One settings loader (issue 18): grep proves it."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    readers = sorted(str(p.relative_to(root)) for room in ("bot", "core", "worker", "trainer", "prompts", "mafioso")
                     for p in (root / room).rglob("*.py")
                     if re.search(r"os\.environ(?!\.setdefault)|os\.getenv", p.read_text(encoding="utf-8")))
    assert readers == ["core/settings.py"]
