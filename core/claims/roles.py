"""False roles: the answer says the code loops with a name or calls a name that the code never uses so.

"It loops `seen` through `set`" of code whose loop walks `item` over `items`, "it calls `base`" of a number
that is only multiplied: the name is the code's (so :mod:`~mafioso.core.claims.names` lets it pass) but not in
that role. A loop claim holds when the name is anywhere in a loop's or comprehension's target or iterable ("walks
`table` from 10 down", "runs `i` through 15"); a call claim when the code calls it, or might out of sight: a
name it defines, imports, passes as an argument or decorates with (``key=len``, ``map(f, xs)``).
"""

from __future__ import annotations

import re

from mafioso.core.claims.text import FENCE, advice_from, negated, sentences, within
from mafioso.prompts.facts import name_roles

__all__ = ["false_roles"]

# Verbs that say the name is what a loop binds or walks; "runs `x` through `upper`" (a function applied) and
# "counts `n` down" are left alone: their names are not a loop's as often as not.
_LOOPS = re.compile(r"\b(?:loops?|looping|iterates?|iterating|walks?|walking)\s+`([A-Za-z_]\w*)`\s+"
                    r"(?:over|through|across|along|from)\b", re.IGNORECASE)
_CALLS = re.compile(r"\b(?:calls?|calling|invokes?|invoking)\s+`([A-Za-z_][\w.]*?)(?:\(\))?`", re.IGNORECASE)


def false_roles(code: str, answer: str) -> list[dict]:
    """Loop and call claims about the code's own names that its syntax tree contradicts, each
    ``{"kind": "false role", "claim": "loops with x" | "calls x", "text": ...}``; none when the code does not
    parse. Names the code lacks are :func:`~mafioso.core.claims.names.invented_names`' business."""
    roles = name_roles(code)
    if roles is None:
        return []
    tokens = set(re.findall(r"\w+", code))
    found: dict[str, dict] = {}
    for sentence in sentences(FENCE.sub(" ", answer)):
        advice = advice_from(sentence)
        claims = [(m, "loops with", m.group(1), roles.looped) for m in _LOOPS.finditer(sentence)]
        claims += [(m, "calls", m.group(1).rsplit(".", 1)[-1], roles.called | roles.callable)
                   for m in _CALLS.finditer(sentence)]
        for match, role, name, supported in claims:
            claim = f"{role} {name}"
            if claim in found or name not in tokens or name in supported:
                continue
            if within(advice, match.start()) or negated(sentence, match.start(), match.end()):
                continue
            found[claim] = {"kind": "false role", "claim": claim, "text": sentence.strip()[:200]}
    return list(found.values())
