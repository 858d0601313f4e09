"""Checks on explanation text shared by the dataset lint, the worker's post-check and ``mafioso eval``."""

from __future__ import annotations

import re
from functools import lru_cache

from mafioso.prompts import persona
from mafioso.prompts.fences import FENCE_MARK

#: Words and phrases that mark the default (mafioso) voice, lowercase, matched on word boundaries; each persona's
#: own are in prompts/personas/<name>/persona.json.
PERSONA_MARKERS = persona().markers


@lru_cache(maxsize=None)
def _marker_re(markers: tuple[str, ...]) -> re.Pattern:
    return re.compile(r"\b(" + "|".join(re.escape(m) for m in markers) + r")\b", re.IGNORECASE)

_CODE_LINE = re.compile(
    r"^\s*(def |class |import |from \S+ import |for .+ in .+:|while .+:|if .+:|elif |else:|try:|except\b|"
    r"return\b|print\(|@\w+|>>> |\w+(\.\w+)* = .+)"
)
_BACKTICK = re.compile(r"`([^`\n]+)`")
# An expression with a call or assignment inside one backtick span: `total = sum(x for x in xs)`
_CODE_SPAN = re.compile(r"\w\s*\(.*\)|\s=\s|:\s*$|\bfor\b.+\bin\b|\blambda\b.*:")


def persona_markers(text: str, markers: tuple[str, ...] = PERSONA_MARKERS) -> list[str]:
    """The persona markers (by default the mafioso's) found in ``text`` (lowercased)."""
    return [m.lower() for m in _marker_re(markers).findall(text)]


def contains_code(text: str) -> bool:
    """True if the text has a code block, a line of code, or a code expression in backticks.

    Short identifiers in backticks (`total`, `read_csv`, `__init__`, `len()`) are fine.
    """
    if FENCE_MARK.search(text):
        return True
    if any(_CODE_LINE.match(line) for line in text.splitlines()):
        return True
    for span in _BACKTICK.findall(text):
        if len(span) > 40 or (_CODE_SPAN.search(span) and not re.fullmatch(r"[\w.]+\(\)", span)):
            return True
    return False


def words(text: str) -> list[str]:
    """The words of ``text`` (whitespace-separated tokens with a letter or digit)."""
    return [w for w in text.split() if re.search(r"\w", w)]


def sentences(text: str) -> list[str]:
    """A rough sentence split: ., ! or ? followed by a space and a capital, a quote or a backtick."""
    parts = re.split(r"(?<=[.!?])\s+(?=[A-Z\"'`(])", text.strip())
    return [p for p in parts if p.strip()]


def phrase(text: str, n: int, end: bool = False) -> str:
    """The first (or last) ``n`` words, lowercased, punctuation stripped: openers and sign-offs."""
    tokens = [re.sub(r"[^\w']", "", w.lower()) for w in words(text)]
    tokens = [t for t in tokens if t]
    return " ".join(tokens[-n:] if end else tokens[:n])
