"""The one reader of fenced code blocks (```` ``` ```` / ``~~~``): chat messages, API chat messages, answers, and
Markdown pastes the facts sheet reads (it lives with the prompt, the room every other one may use).

    fenced_blocks("explain\\n```python\\nx = 1\\n```")   -> [Block(lang="python", code="x = 1", ...)]
    around("why?\\n```\\nx = 1\\n```\\nplease", blocks)   -> "why? please"  (what a chat message asks)
    without_fences("It adds.\\n```\\nx = 1\\n```\\nDone.")  -> "It adds.\\n\\nDone."

The rule is CommonMark's, loosened for chat: a run of three or more backticks (or tildes) opens a block anywhere
in the text, and the next run of the same character at least as long closes it. An **unclosed fence runs to the
end of the text** (as CommonMark says) when a line follows it: a message cut short still gives its code, and an
answer that opens a fence and never closes it still counts as code there. ``Block.closed`` tells the two apart,
for a caller that wants only finished blocks (a bot listening passively). A run with no line after it and
nothing to close it opens nothing (``use ``` to fence code`` is prose).

Linear in the text: runs are paired in one pass from the right (a regex with a back-reference was cubic on a
paste of thousands of backticks, issue 19).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["FENCE_MARK", "Block", "around", "fenced_blocks", "paired_runs", "without_fences"]

#: Where a fence may be: any run of three backticks or tildes (the checks that only ask "is there a fence?").
FENCE_MARK = re.compile(r"```|~~~")
_FENCE_RUN = re.compile(r"`{3,}|~{3,}")
_TAG = re.compile(r"[\w+#.-]+")
#: A fence run longer than this closes like one of this length (only a pathological paste has more).
_MAX_FENCE = 16


@dataclass(frozen=True)
class Block:
    """One fenced block: its language tag (lower case, may be empty), its code (without the tag line and the
    fences), where it sits in the text (``text[start:end]`` includes the fences) and whether a fence closed it."""

    lang: str
    code: str
    start: int
    end: int
    closed: bool = True


def _partners(runs: list[re.Match], fence: bool) -> list[int | None]:
    """For each delimiter run, the index of the nearest later run that closes it (or None): a fence closes at the
    next run of its character at least as long, an inline code span at the next backtick run of exactly its
    length."""
    nearest: dict[tuple[str, int], int] = {}  # (character, length) -> index of the nearest later run that closes it
    partner: list[int | None] = [None] * len(runs)
    for j in range(len(runs) - 1, -1, -1):
        char, length = runs[j][0][0], len(runs[j][0])
        partner[j] = nearest.get((char, min(length, _MAX_FENCE) if fence else length))
        for closes in range(3, min(length, _MAX_FENCE) + 1) if fence else (length,):
            nearest[(char, closes)] = j
    return partner


def paired_runs(runs: list[re.Match], fence: bool) -> list[tuple[re.Match, re.Match]]:
    """(opening, closing) pairs of delimiter runs, left to right (fences with ``fence``, else inline backtick
    spans); a run nothing closes opens nothing."""
    partner, pairs, i = _partners(runs, fence), [], 0
    while i < len(runs):
        j = partner[i]
        if j is None:
            i += 1
        else:
            pairs.append((runs[i], runs[j]))
            i = j + 1
    return pairs


def _block(text: str, opening: re.Match, closing: re.Match | None) -> Block:
    body = text[opening.end():closing.start() if closing else len(text)]
    first, newline, rest = body.partition("\n")
    lang = ""
    if newline and (first.strip() == "" or _TAG.fullmatch(first.strip())):
        lang, body = first.strip().lower(), rest  # ```python\n…``` (the tag line is not code)
    end = closing.end() if closing else len(text)
    return Block(lang, body.strip("\n"), opening.start(), end, closing is not None)


def fenced_blocks(text: str, *, empty: bool = False) -> list[Block]:
    """Every fenced block in ``text``, in order (the module docstring has the rule); blocks with no code only
    with ``empty``."""
    runs = list(_FENCE_RUN.finditer(text))
    partner, blocks, i = _partners(runs, fence=True), [], 0
    last_line = text.rfind("\n")
    while i < len(runs):
        j = partner[i]
        if j is not None:
            blocks.append(_block(text, runs[i], runs[j]))
            i = j + 1
        elif runs[i].end() <= last_line:  # unclosed, with a line after it: runs to the end
            blocks.append(_block(text, runs[i], None))
            break
        else:
            i += 1
    return [b for b in blocks if empty or b.code.strip()]


def without_fences(text: str) -> str:
    """``text`` with every fenced block (fences, tag and code) taken out."""
    return "".join(_outside(text, fenced_blocks(text, empty=True)))


def _outside(text: str, blocks: list[Block]) -> list[str]:
    """The pieces of ``text`` before, between and after ``blocks`` (in order)."""
    pieces, at = [], 0
    for block in blocks:
        pieces.append(text[at:block.start])
        at = block.end
    return pieces + [text[at:]]


def around(text: str, blocks: list[Block]) -> str | None:
    """The text of ``text`` outside ``blocks`` (its fenced blocks, in order), whitespace collapsed: what a chat
    message asks about its code; None when there is none."""
    return " ".join(" ".join(_outside(text, blocks)).split()) or None
