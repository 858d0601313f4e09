"""Is a paste code in another language? The facts sheet says so ("it reads as SQL"), as the data's answers do
("That's no Python, my friend, that's SQL"), rather than leave the model to explain it as Python (Gemma
explained SQL, JavaScript and C pastes as Python, with confidence).

A paste is another language's only when no reading of it parses as Python (:func:`mafioso.prompts.facts.parse`:
as pasted, dedented, its fenced code, a pasted run) and its lines start the way that language's do and Python's
never do: one line only that language writes (``#include <…>``, ``<?php``, ``SELECT … FROM``), else two lines of
the language with the most (``const x =``, ``}``). A line that starts like Python (``def f(``, ``from x import``,
a block header ending in a colon) makes it Python with a mistake in it. Lines are read one at a time with
patterns anchored at their start: linear in the paste.
"""

from __future__ import annotations

import re


__all__ = ["PYTHON_LINE", "other_language"]

# (language, a line that only it starts with: one is enough, lines it starts with: two are needed)
_SIGNATURES: tuple[tuple[str, re.Pattern, re.Pattern], ...] = tuple(
    (name, re.compile(decisive, re.IGNORECASE if name == "SQL" else 0), re.compile(usual))
    for name, decisive, usual in (
        ("SQL", r"(?:select\s.*\bfrom\s|insert\s+into\s|update\s+\w+\s+set\s|delete\s+from\s|"
                r"create\s+(?:table|index|view|database)\s|alter\s+table\s|drop\s+table\s)",
         r"(?i:where\s|group\s+by\s|order\s+by\s|join\s|values\s*\(|from\s+\w+\s*;?$)"),
        ("JavaScript", r"(?:console\.log\(|document\.\w+|module\.exports\b|export\s+default\b)",
         r"(?:function\s*\w*\s*\(.*\)\s*\{|(?:const|let|var)\s+\w+\s*=|.*=>\s*\{?$|\}\)?;?$|"
         r"import\s.+\sfrom\s+['\"])"),
        ("C or C++", r"(?:#include\s*[<\"]|int\s+main\s*\(|using\s+namespace\s+std\b|std::)",
         r"(?:(?:int|void|char|float|double|long|unsigned|struct)\s+\**\w+\s*[(\[=;]|printf\(|\}\s*;?$)"),
        ("Java", r"(?:public\s+(?:static\s+)?(?:final\s+)?(?:class|void|int|String)\b|System\.out\.print)",
         r"(?:(?:private|protected|public)\s+\w+|\}\s*$)"),
        ("Go", r"(?:package\s+main\b|func\s+main\s*\(\)|fmt\.Print)", r"(?:func\s+\w+\s*\(|\w+\s*:=|\}\s*$)"),
        ("Rust", r"(?:fn\s+main\s*\(\)|use\s+std::|println!\()", r"(?:fn\s+\w+\s*\(|let\s+mut\s|\}\s*$)"),
        ("shell", r"(?:#!\s*/(?:usr/)?bin/(?:env\s+)?(?:ba|z)?sh\b)",
         r"(?:echo\s|fi$|done$|then$|esac$|export\s+\w+=)"),
        ("PHP", r"<\?php\b", r"(?:\$\w+\s*=|echo\s)"),
        ("HTML", r"(?i:<!doctype\s+html|<html\b)", r"(?i:</?(?:div|head|body|p|span|a|ul|li|script|style)\b)"),
    ))
# Lines only Python starts with: with one of them the paste is Python with a mistake in it.
PYTHON_LINE = re.compile(r"(?:def\s+\w+\s*\(|class\s+\w+\s*[(:]|from\s+[\w.]+\s+import\s|"
                     r"import\s+[\w.]+(?:\s+as\s+\w+)?\s*$|"
                     r"elif\b|(?:if|for|while|with|try|except|else|finally)\b.*:\s*(?:#.*)?$|print\s+['\"]|@\w+)")


def other_language(code: str) -> str | None:
    """The language of ``code``, a paste no reading of which parses as Python (the caller knows), when its lines
    say which (module docstring); else None."""
    lines = [line.strip() for line in code.splitlines()]
    lines = [line for line in lines if line and not line.startswith(("//", "--", "/*", "*"))]
    if any(PYTHON_LINE.match(line) for line in lines):
        return None
    for name, decisive, _ in _SIGNATURES:
        if any(decisive.match(line) for line in lines):
            return name
    count, name = max((sum(1 for line in lines if usual.match(line)), name) for name, _, usual in _SIGNATURES)
    return name if count >= 2 else None

