"""Is a chat message a follow-up question, words rather than code? Then a chat adapter or the API's chat endpoint
asks it about code sent earlier (the conversation's latest code, the message a Discord reply is about, the code
last explained in a Slack thread) instead of explaining the words as code.

    prose("is there a bug?")  -> True        prose("x = 1")    -> False
    prose("explain")          -> True        prose("```…```")  -> False
"""

from __future__ import annotations

import re

from mafioso.prompts.facts import parse
from mafioso.prompts.fences import FENCE_MARK
from mafioso.prompts.language import PYTHON_LINE

__all__ = ["prose"]

#: One line of plain words and sentence marks: prose, though a bare word would parse as a Python name.
_PLAIN_WORDS = re.compile(r"[\w\s,.;:'’!?&-]*")
#: A line that reads as code even when the paste does not parse: a Python statement's start
#: (:mod:`mafioso.prompts.language`), an assignment, or a bracket or semicolon at its end.
_CODE_LINE = re.compile(r"\s*[\w.\[\]'\"]+\s*[-+*/%|&]?=[^=]|.*[;{}()\[\]]\s*$")


def prose(text: str) -> bool:
    """Whether a chat message holds no code but words: no fenced block, no line that reads as code (a broken
    ``def f(:`` is still code), and either no reading of it parses as Python (:func:`mafioso.prompts.facts.parse`)
    or it is one line of plain words ("explain", "thanks": a bare word parses as a name). ``x = 1`` or
    ``print(x)`` is code. Linear in the text."""
    if not text.strip() or FENCE_MARK.search(text):
        return False
    lines = [line for line in text.splitlines() if line.strip()]
    if any(_CODE_LINE.match(line) or PYTHON_LINE.match(line.strip()) for line in lines):
        return False
    return (len(lines) == 1 and _PLAIN_WORDS.fullmatch(text) is not None) or parse(text) is None
