"""The input guard: what the worker refuses before it spends a GPU cycle.

    empty or whitespace only                          → InputRejected("empty")
    over ``max_input_chars`` or the model's context   → InputRejected("too_large")
    not UTF-8 (lone surrogates too), NUL bytes or mostly control characters → InputRejected("binary")

Each refusal carries the persona's line for it (:mod:`mafioso.prompts.lines`), which an adapter can show as
is. :func:`decode` is the product's one bytes-to-text rule (files in chat, request bodies). The guard only reads
the text; the bot never executes user code.
"""

from __future__ import annotations

from typing import Callable

from mafioso.core.errors import InputRejected
from mafioso.prompts.lines import line

__all__ = ["check", "decode", "refusal"]

#: Above this share of control characters (tabs and newlines excluded) the text is treated as binary.
_CONTROL_SHARE = 0.1


def refusal(reason: str, persona: str | None = None) -> InputRejected:
    """The refusal for ``reason`` (empty, too_large, binary) in ``persona``'s words (default: the mafioso)."""
    return InputRejected(reason, line(reason, persona))


def decode(data: bytes, persona: str | None = None) -> str:
    """Bytes from a file or a socket as text: the one bytes-to-text rule. Raises ``InputRejected("binary")``
    unless they are UTF-8 (a BOM is dropped) without NUL bytes or a share of control characters."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise refusal("binary", persona) from None
    if _looks_binary(text):
        raise refusal("binary", persona)
    return text


def _looks_binary(text: str) -> bool:
    if "\x00" in text or (not text.isascii() and _has_surrogates(text)):
        return True
    control = sum(1 for ch in text if (ord(ch) < 32 and ch not in "\t\n\r\f") or 0x7F <= ord(ch) < 0xA0)
    return control > _CONTROL_SHARE * len(text)


def _has_surrogates(text: str) -> bool:
    """True for text no UTF-8 encoder or tokenizer accepts: lone surrogates (``"\\ud800"`` in JSON)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def check(code: str | bytes, request: str | None = None, *, max_chars: int,
          prompt_tokens: Callable[[str, str | None], int] | None = None,
          max_prompt_tokens: int | None = None, persona: str | None = None) -> str:
    """The code as text if the worker will take it; raises :class:`InputRejected` in ``persona``'s words
    otherwise.

    ``prompt_tokens`` and ``max_prompt_tokens`` (from the engine) add the context check: the prompt must
    leave room for a full answer.
    """
    if isinstance(code, bytes):
        code = decode(code, persona)
    if not code.strip():
        raise refusal("empty", persona)
    if len(code) + len(request or "") > max_chars:
        raise refusal("too_large", persona)
    if _looks_binary(code) or (request and _looks_binary(request)):
        raise refusal("binary", persona)
    if prompt_tokens is not None and max_prompt_tokens is not None:
        if prompt_tokens(code, request) > max_prompt_tokens:
            raise refusal("too_large", persona)
    return code
