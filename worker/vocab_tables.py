"""Tables over a tokenizer's whole vocabulary, computed once per tokenizer and kept on disk (issue 21, cold start).

Some rules need a fact about every token: the fast decoder's ``###`` stop asks which tokens' text holds a ``#``.
Decoding Gemma's 262,144 tokens one by one takes ~2 s on 2 cores, at every start, for a table of a few hundred
ids that only changes with the tokenizer. So the first start computes it and keeps it
(:mod:`mafioso.core.tokenizer_cache`: keyed by the tokenizer's files, JSON); later ones read it:

    hashy = tokens_containing(tokenizer, "#")   # {ids whose decode([id]) holds "#"}

A tokenizer without local files (built in memory) is computed every time, never cached.
"""

from __future__ import annotations

from mafioso.core import tokenizer_cache

__all__ = ["tokens_containing"]


def tokens_containing(tokenizer, text: str) -> set[int]:
    """Every token id whose text on its own (``tokenizer.decode([id])``) holds ``text``: cached per tokenizer."""
    key = tokenizer_cache.files_key(str(getattr(tokenizer, "name_or_path", "") or ""),
                                    f"tokens containing {text!r}, {len(tokenizer)} tokens")
    ids = tokenizer_cache.read(key) if key else None
    if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
        ids = [i for i in range(len(tokenizer)) if text in tokenizer.decode([i])]
        if key:
            tokenizer_cache.write(key, ids)
    return set(ids)
