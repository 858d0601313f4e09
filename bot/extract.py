"""What the chat adapters share: code in (extraction), text out (splitting, the refusal for an error).

Code comes from a chat message in one of three ways:

* fenced blocks (```` ``` ````, ```` ```python ````/``py``/``python3``, ``~~~``); several are joined;
* no fence (a slash command, a mention): the text itself is the code (the adapter removes the mention);
* ``.py`` attachments / Slack snippets, within the size limit (the adapter downloads, we decide and decode).

Answers go out in chunks under the platform's limit, cut on sentence boundaries and never inside a backtick
span. Platform formatting (Slack escaping, Discord replies) stays in the adapters.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import Iterable

from mafioso.core import guard
from mafioso.prompts.fences import Block, around, fenced_blocks, paired_runs
from mafioso.core.errors import InputRejected, RequestError, WorkerBusy, WorkerTimeout, WorkerUnavailable
from mafioso.prompts.lines import line

PYTHON_TAGS = frozenset({"", "python", "py", "python3", "py3", "pycon", "ipython"})
_BACKTICK_RUN = re.compile(r"`+")
_INLINE = re.compile(r"^(`{1,2})([^`].*?)\1$", re.S)


def python_blocks(text: str, *, closed: bool = False) -> list[Block]:
    """The fenced blocks (mafioso.prompts.fences) tagged as Python or not tagged at all; only closed ones with
    ``closed``."""
    return [b for b in fenced_blocks(text) if b.lang in PYTHON_TAGS and (b.closed or not closed)]


def extract(text: str, *, fence_required: bool = False) -> tuple[str, str | None]:
    """(code, request) of a message: its Python (else any) fenced blocks joined, and the text around them, what
    the message asks about the code ("is there a bug?"; None when there is none); without a fence, the text itself
    is the code.

    With ``fence_required`` (passive listening) only closed Python or untagged blocks count, and plain text is no
    code. Otherwise a fence left open runs to the end of the message (mafioso.prompts.fences).
    """
    blocks = python_blocks(text, closed=fence_required)
    if not blocks and not fence_required:
        blocks = fenced_blocks(text)
    if blocks:
        return join_code(b.code for b in blocks), around(text, blocks)
    if fence_required:
        return "", None
    text = text.strip()
    inline = _INLINE.match(text)  # `x = 1` sent as inline code
    return (inline[2] if inline else text).strip(), None


@dataclass(frozen=True)
class Paste:
    """What a chat message gives to explain: the code, and the question the message asks about it (None: explain
    it)."""

    code: str
    request: str | None = None

    @classmethod
    def of(cls, text: str, files: list[str], *, fence_required: bool = False) -> Paste:
        """A message's text with the code of its files (already read): the text's code (:func:`extract`; only
        fenced blocks beside files) and the files', joined; the text around the blocks is the question. Beside
        files, a text with no block is all question ("why does this crash?" with ``main.py``)."""
        code, request = extract(text, fence_required=fence_required or bool(files))
        if files and not code:
            request = " ".join(text.split()) or None
        return cls(join_code([code, *files]), request)


def join_code(parts: Iterable[str]) -> str:
    """Join pieces of code (blocks, files) with a blank line; empty pieces are dropped."""
    return "\n\n".join(p.strip("\n") for p in parts if p and p.strip())


def is_code_file(filename: str, filetype: str | None = None) -> bool:
    """True for a Python file: a ``.py`` name or a Slack ``python`` file type."""
    return filename.lower().endswith((".py", ".pyw")) or (filetype or "").lower() == "python"


def decode_code_file(data: bytes) -> str:
    """The file as text; raises ``InputRejected("binary")`` when it is not (the guard's one rule, core.guard)."""
    return guard.decode(data)


# ------------------------------------------------------------------------------------------- splitting



def _backtick_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of every backtick span (inline code or fenced block), in order, in linear time."""
    pairs = paired_runs(list(_BACKTICK_RUN.finditer(text)), fence=False)
    return [(opening.start(), closing.end()) for opening, closing in pairs]


_SENTENCE_END = re.compile(r"[.!?…]+[\"')\]*_]*\s+|\n+")
_SPACE = re.compile(r"\s+")


def split_text(text: str, limit: int) -> list[str]:
    """Cut ``text`` into chunks of at most ``limit`` characters, on sentence (else word) boundaries.

    A backtick span (inline code or a fenced block) is never cut, unless it alone is longer than ``limit``:
    then it is closed at the cut and reopened in the next chunk, so every chunk still renders.
    """
    if limit < 16:
        raise ValueError("limit must be at least 16 characters")
    chunks: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        spans = _backtick_spans(rest)
        starts = [start for start, _ in spans]

        def outside(pos: int) -> bool:  # spans are sorted and disjoint: only the last one starting before pos
            k = bisect.bisect_left(starts, pos) - 1
            return k < 0 or not pos < spans[k][1]

        cut = _last_break(_SENTENCE_END, rest, limit, outside) or _last_break(_SPACE, rest, limit, outside)
        span = next(((start, end) for start, end in spans if start < limit < end), None)
        if not cut and span and span[0] > 0:
            cut = span[0]  # no boundary before the span: cut right in front of it
        if cut:
            head, rest = rest[:cut], rest[cut:]
        elif span and len(re.match(r"`+", rest)[0]) < limit // 4:  # one span longer than the limit starts
            # here: close it at the cut, reopen it after (a fence too long for that is cut like a word)
            fence = re.match(r"`+", rest)[0]
            cut, newline = limit - len(fence) - 1, "\n" if len(fence) >= 3 else ""
            line_end = rest.rfind("\n", len(fence), cut)
            cut = line_end if line_end > limit // 2 else cut  # a fenced block is best cut between lines
            head, rest = rest[:cut].rstrip("\n") + newline + fence, fence + newline + rest[cut:].lstrip("\n")
        else:  # one word longer than the limit
            head, rest = rest[:limit], rest[limit:]
        if head.strip():
            chunks.append(head.strip())
        rest = rest.strip()
    if rest:
        chunks.append(rest)
    return chunks


def _last_break(pattern: re.Pattern, text: str, limit: int, outside) -> int:
    """End of the last ``pattern`` match that ends within ``limit`` and starts outside every span (0: none)."""
    best = 0
    for match in pattern.finditer(text, 0, limit + 1):
        if match.end() > limit:
            break
        if match.start() > 0 and outside(match.start()):
            best = match.end()
    return best


# ------------------------------------------------------------- what the bot says when it cannot explain


def error_line(exc: RequestError, max_chars: int, persona: str | None = None) -> str:
    """``persona``'s line for a request the worker could not serve, chosen by the kind of error (its message
    may come from a remote server and is never shown)."""
    if isinstance(exc, InputRejected):
        if exc.reason == "too_large":
            return line("code_too_long", persona, limit=max_chars)
        return line("binary" if exc.reason == "binary" else "no_code", persona)
    kinds = ((WorkerBusy, "busy"), (WorkerTimeout, "timeout"), (WorkerUnavailable, "worker_down"))
    return line(next((name for kind, name in kinds if isinstance(exc, kind)), "failed"), persona)
