"""The input guard: what the worker refuses before it spends a GPU cycle.

    empty or whitespace only                          → InputRejected("empty")
    over ``max_input_chars`` or the model's context   → InputRejected("too_large")
    not UTF-8 (lone surrogates too), NUL bytes or mostly control characters → InputRejected("binary")

Each refusal carries a polite, in-character message an adapter can show as is. The guard only reads the
text; the bot never executes user code.
"""

from __future__ import annotations

from typing import Callable

from mafioso.core.errors import InputRejected

__all__ = ["REFUSALS", "check", "decode"]

REFUSALS = {
    "empty": "Whoa, pal, you handed me an empty envelope. Put some Python in it and we'll talk.",
    "too_large": "That's a whole ledger, my friend, and I read one page at a time. "
                 "Send me a smaller piece of the code, capisce?",
    "binary": "This ain't Python, kid, it's a bag of bytes. I only read code the family can read: plain text.",
}

#: Above this share of control characters (tabs and newlines excluded) the text is treated as binary.
_CONTROL_SHARE = 0.1


def _reject(reason: str) -> InputRejected:
    return InputRejected(reason, REFUSALS[reason])


def decode(data: bytes) -> str:
    """Bytes from a file or a socket as text; raises ``InputRejected("binary")`` unless they are UTF-8."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise _reject("binary") from None


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
          max_prompt_tokens: int | None = None) -> str:
    """The code as text if the worker will take it; raises :class:`InputRejected` otherwise.

    ``prompt_tokens`` and ``max_prompt_tokens`` (from the engine) add the context check: the prompt must
    leave room for a full answer.
    """
    if isinstance(code, bytes):
        code = decode(code)
    if not code.strip():
        raise _reject("empty")
    if len(code) + len(request or "") > max_chars:
        raise _reject("too_large")
    if _looks_binary(code) or (request and _looks_binary(request)):
        raise _reject("binary")
    if prompt_tokens is not None and max_prompt_tokens is not None:
        if prompt_tokens(code, request) > max_prompt_tokens:
            raise _reject("too_large")
    return code
