"""The output post-check: Mafioso explains code, it never writes it.

The persona is trained to answer without code, but a small model slips. When
:func:`mafioso.core.text_checks.contains_code` flags an answer, :func:`scrub` removes fenced blocks, lines of
code and code expressions in backticks, and says so (``leaked=True``) so the worker can count it: the leak
is measured, not hidden. Every answer gets it whichever server wrote it: our engines, and an OpenAI-style
server (vLLM) through the worker client; ``mafioso eval`` scores what it leaves (``code_leak_rate``).
"""

from __future__ import annotations

import re

from mafioso import prompts
from mafioso.core.text_checks import contains_code, sentences
from mafioso.prompts.fences import without_fences
from mafioso.prompts.lines import line

__all__ = ["finish", "scrub"]

_BACKTICK = re.compile(r"`([^`\n]+)`")


def _scrub_line(line: str) -> str | None:
    """The line without its code: None for a line of code, code spans in prose replaced. A line of several
    sentences that starts as prose loses only its sentences of code: a model writes a whole answer on one line,
    and one sentence with a stray fence mark ("builds the list ````list`") must not take the rest with it."""
    if not contains_code(line):
        return line
    if not contains_code(_BACKTICK.sub("", line)):  # prose quoting code
        return _BACKTICK.sub(lambda m: _stand_in(m, line), line)
    parts = sentences(line)
    if len(parts) < 2 or contains_code(_BACKTICK.sub("", parts[0])):
        return None  # the line itself is code (a string with ". " in it splits a code line too)
    kept = [scrubbed for part in parts if (scrubbed := _scrub_line(part)) is not None]
    return " ".join(kept)


def _stand_in(span: re.Match, line: str) -> str:
    """What a code span of ``line`` becomes: itself when it is not code, else "that bit of code", with a space on
    each side that touches a word (an answer with unbalanced backticks pairs them across words: "`idx`max`x =
    1`fees`" must not read "maxthat bit of codefees")."""
    if not contains_code(span.group(0)):
        return span.group(0)
    before, after = line[span.start() - 1:span.start()], line[span.end():span.end() + 1]
    return f"{' ' if before.isalnum() else ''}that bit of code{' ' if after.isalnum() else ''}"


def scrub(text: str, persona: str | None = None) -> tuple[str, bool]:
    """``(text without code, leaked)``; the text is unchanged when no code was found, and ``persona``'s
    ``off_the_record`` line when nothing but code was."""
    if not contains_code(text):
        return text, False
    lines = [_scrub_line(line) for line in without_fences(text).splitlines()]  # an unclosed fence: to the end
    cleaned = "\n".join(line for line in lines if line is not None)
    cleaned = re.sub(r"\n{3,}", "\n\n", cleaned).strip()
    return cleaned or line("off_the_record", persona), True


def finish(text: str, persona: str | None = None) -> tuple[str, bool]:
    """The answer as users see it, from the model's raw text: cut at the first ``###`` (a new section means the
    answer is over), stripped, then :func:`scrub`. Our engines and the client of an OpenAI-style server (vLLM)
    both call this, so an answer reads the same whichever served it."""
    return scrub(text.split(prompts.SECTION_MARKER, 1)[0].strip(), persona)
