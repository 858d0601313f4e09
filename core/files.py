"""Where the project keeps files it makes (the cache folder) and how it fingerprints a file: the two facts the
model files (base models, merged weights, tokenizer facts) all need, below every one of them."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tqdm.auto import tqdm

from mafioso.core.config import PathsConfig
from mafioso.core.settings import load

__all__ = ["cache_dir", "sha256_file"]


def cache_dir() -> Path:
    """Where converted models live: ``MAFIOSO_CACHE`` (PathsConfig.cache) or ``~/.cache/mafioso``."""
    return Path(load(PathsConfig).cache or Path.home() / ".cache" / "mafioso").expanduser()


def sha256_file(path: Path, progress: bool = False) -> str:
    """Hex sha256 of a file, with an optional progress bar."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle, tqdm(
        total=path.stat().st_size, unit="B", unit_scale=True, desc=f"sha256 {path.name}",
        disable=not progress, leave=False,
    ) as bar:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
            bar.update(len(block))
    return digest.hexdigest()
