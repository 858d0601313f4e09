"""Small facts about a tokenizer, kept on disk keyed by its files, so that a start reads them instead of working
them out from the 33 MB ``tokenizer.json`` of Gemma (issue 21, cold start).

    key = files_key(folder, "added tokens")          # None: no tokenizer files there (a HF id, a test's object)
    facts = read(key)                                # None when absent or broken
    write(key, facts)                                # atomically; a failure only costs the next start

The key hashes the tokenizer files of the folder (sha256 of each, remembered per process by path, size and
time), the transformers and tokenizers versions (what they make of the files may change with them), what is
kept and :data:`VERSION`. Files live in ``cache_dir()/tokenizer/``, JSON only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from mafioso.core.files import cache_dir, sha256_file

__all__ = ["TOKENIZER_FILES", "VERSION", "files_key", "read", "write"]

log = logging.getLogger(__name__)

#: Bump when what is kept is computed differently: old files are then unused.
VERSION = 1
#: The files a tokenizer folder may hold (any of them changes what the tokenizer does).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "tokenizer.model", "vocab.json", "merges.txt", "chat_template.jinja")


@lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(Path(path))


def _versions() -> list[str]:
    found = []
    for package in ("transformers", "tokenizers"):
        try:
            found.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            found.append(f"{package} absent")
    return found


def files_key(folder: str | os.PathLike, what: str) -> str | None:
    """The cache key of ``what`` about the tokenizer in ``folder``, or None when it holds no tokenizer files."""
    folder = Path(folder).expanduser()
    files = [folder / name for name in TOKENIZER_FILES if (folder / name).is_file()] if folder.is_dir() else []
    if not files:
        return None
    hashes = {p.name: _sha256(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files}
    facts = {"files": hashes, "versions": _versions(), "what": what, "version": VERSION}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:24]


def _path(key: str) -> Path:
    return cache_dir() / "tokenizer" / f"{key}.json"


def read(key: str):
    """What :func:`write` kept under ``key`` (any JSON value), or None when there is none or it is broken."""
    try:
        return json.loads(_path(key).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write(key: str, facts) -> None:
    """Keep ``facts`` (JSON) under ``key``: written beside it, then renamed into place."""
    path = _path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        partial.write_text(json.dumps(facts), encoding="utf-8")
        partial.replace(path)
    except OSError as exc:
        log.warning("cannot save the tokenizer facts %s: %s", path, exc)
