"""Tables over a tokenizer's whole vocabulary, computed once per tokenizer and kept on disk (issue 21, cold start).

Some rules need a fact about every token: the fast decoder's ``###`` stop asks which tokens' text holds a ``#``.
Decoding Gemma's 262,144 tokens one by one takes ~2 s on 2 cores, at every start, for a table of a few hundred
ids that only changes with the tokenizer. So the first start computes it and saves it under
``cache_dir()/vocab/``; later ones read it:

    hashy = tokens_containing(tokenizer, "#")   # {ids whose decode([id]) holds "#"}

The key hashes the tokenizer's files (sha256 of each, ~0.05 s for Gemma's 33 MB tokenizer.json), its length,
the transformers and tokenizers versions (decoding may change with them), the text asked for and
:data:`VERSION`. A tokenizer without local files (built in memory) is computed every time, never cached.
Written atomically (a temp file renamed into place); a broken file is computed again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from mafioso.core.base_model import cache_dir, sha256_file

__all__ = ["VERSION", "tokens_containing"]

log = logging.getLogger(__name__)

#: Bump when a table is computed differently: old files are then unused.
VERSION = 1
#: The files a tokenizer folder may hold (any of them changes what decoding gives).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "tokenizer.model", "vocab.json", "merges.txt", "chat_template.jinja")


def _versions() -> list[str]:
    found = []
    for package in ("transformers", "tokenizers"):
        try:
            found.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            found.append(f"{package} absent")
    return found


def _key(tokenizer, what: str) -> str | None:
    """The table's cache key, or None when the tokenizer has no local files to hash."""
    folder = Path(str(getattr(tokenizer, "name_or_path", "") or "")).expanduser()
    files = [folder / name for name in TOKENIZER_FILES if (folder / name).is_file()] if folder.is_dir() else []
    if not files:
        return None
    facts = {"files": {p.name: sha256_file(p) for p in files}, "length": len(tokenizer), "versions": _versions(),
             "what": what, "version": VERSION}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:24]


def _read(path: Path) -> set[int] | None:
    try:
        ids = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
        return None
    return set(ids)


def _write(path: Path, ids: set[int]) -> None:
    try:  # a table that cannot be saved is computed again next time; nothing else depends on it
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}")
        partial.write_text(json.dumps(sorted(ids)), encoding="utf-8")
        partial.replace(path)
    except OSError as exc:
        log.warning("cannot save the vocabulary table %s: %s", path, exc)


def tokens_containing(tokenizer, text: str) -> set[int]:
    """Every token id whose text on its own (``tokenizer.decode([id])``) holds ``text``: cached per tokenizer."""
    key = _key(tokenizer, f"containing {text!r}")
    path = cache_dir() / "vocab" / f"containing-{key}.json" if key else None
    ids = _read(path) if path else None
    if ids is None:
        ids = {i for i in range(len(tokenizer)) if text in tokenizer.decode([i])}
        if path:
            _write(path, ids)
    return ids
