"""False roles: the answer says the code loops with a name, calls a name, or that a name is a kind of thing,
and the code never uses or makes it so.

"It loops `seen` through `set`" of code whose loop walks `item` over `items`, "it calls `base`" of a number
that is only multiplied, "`mentions_cops` is a list" of a function, "`teams` is a dict" of a list literal: the
name is the code's (so :mod:`~mafioso.core.claims.names` lets it pass) but not in that role.

- A loop claim holds when the name is anywhere in a loop's or comprehension's target or iterable ("walks
  `table` from 10 down", "loops `i` through 15").
- A call claim holds when the code calls the name, or might out of sight: a name it defines, imports, passes
  as an argument or decorates with (``key=len``, ``map(f, xs)``).
- A return claim ("`fizzbuzz` returns the words") is false of a function that never hands back a value;
  "returns nothing", "returns None" are not return claims.
- A kind claim is checked only for a name the code binds as one kind alone
  (:class:`mafioso.prompts.facts.NameRoles`), and only where the kind's noun heads the phrase ("`raw` is a
  messy shopping list" and "a class attribute" are not kind claims).
"""

from __future__ import annotations

import re

from mafioso.core.claims.names import code_tokens
from mafioso.core.claims.text import FENCE, advice_from, negated, quoted, sentences, within
from mafioso.prompts.facts import name_roles

__all__ = ["false_roles"]

# Verbs that say the name is what a loop binds or walks; "runs `x` through `upper`" (a function applied) and
# "counts `n` down" are left alone: their names are not a loop's as often as not.
_LOOPS = re.compile(r"\b(?:loops?|looping|iterates?|iterating|walks?|walking)\s+`([A-Za-z_]\w*)`\s+"
                    r"(?:over|through|across|along|from)\b", re.IGNORECASE)
_CALLS = re.compile(r"\b(?:calls?|calling|invokes?|invoking)\s+`([A-Za-z_][\w.]*?)(?:\(\))?`", re.IGNORECASE)
# Kind nouns and the kind each names; a few plain adjectives may stand before one.
_NOUNS = {"dict": "dict", "dictionary": "dict", "list": "list", "set": "set", "tuple": "tuple", "string": "string",
          "integer": "number", "number": "number", "float": "number", "boolean": "bool", "function": "function",
          "method": "function", "class": "class"}
_ADJECTIVE = (r"(?:(?:new|nested|plain|simple|empty|sorted|big|small|long|short|single|whole|fresh|flat|regular|"
              r"ordinary|mutable|immutable|normal|bare|little|tiny|huge|lone)\s+)?")
_NOUN = "(" + "|".join(_NOUNS) + r")\b"
# The noun heads its phrase: what follows ends it or starts a clause ("a dict keyed by", "a list, and").
_HEAD = (r"(?=\s*(?:[,.;:!?)]|$|(?:that|which|with|of|keyed|holding|containing|mapping|indexing|where|whose|and|so|"
         r"but|for|from|in|on|to|built|made|called|named|like|here|there|now)\b))")
_IS_A = re.compile(r"`([A-Za-z_]\w*)`\s+(?:is|was|becomes|stays|remains)\s+(?:just\s+|only\s+|still\s+|really\s+)?"
                   r"an?\s+" + _ADJECTIVE + _NOUN + _HEAD, re.IGNORECASE)
_RETURNS = re.compile(r"`([A-Za-z_]\w*)(?:\(\))?`\s+(?:then\s+|also\s+|just\s+|only\s+|finally\s+)?"
                      r"(?:returns|hands back|gives back)\b(?!\s+(?:nothing|None|`None`|no\b))", re.IGNORECASE)
_THE_X = re.compile(r"\b(?:the|an?)\s+" + _ADJECTIVE + _NOUN + r"\s+`([A-Za-z_]\w*)`", re.IGNORECASE)


def _kind_fits(kind: str, noun: str) -> bool:
    """True if a name of ``kind`` may be called a ``noun`` (a class may subclass ``dict``; a bool is a number)."""
    return kind == _NOUNS[noun] or (kind == "class" and _NOUNS[noun] != "function") or (
        kind == "bool" and _NOUNS[noun] == "number")


def false_roles(code: str, answer: str) -> list[dict]:
    """Loop, call, return and kind claims about the code's own names that its syntax tree contradicts, each
    ``{"kind": "false role", "claim": ..., "text": ...}`` ("loops with x", "calls x", "x returns a value",
    "x is a list"); none when the code does not parse. Names the code lacks are
    :func:`~mafioso.core.claims.names.invented_names`' business."""
    roles = name_roles(code)
    if roles is None:
        return []
    tokens = code_tokens(code)
    calls = roles.called | roles.callable
    found: dict[str, dict] = {}
    for sentence in sentences(FENCE.sub(" ", answer)):
        advice = advice_from(sentence)
        # (where, what is claimed, the name, whether the code supports it)
        claims = [(m, f"loops with {m.group(1)}", m.group(1), m.group(1) in roles.looped)
                  for m in _LOOPS.finditer(sentence)]
        claims += [(m, f"calls {name}", name, name in calls)
                   for m in _CALLS.finditer(sentence) for name in [m.group(1).rsplit(".", 1)[-1]]]
        claims += [(m, f"{m.group(1)} returns a value", m.group(1), m.group(1) not in roles.valueless)
                   for m in _RETURNS.finditer(sentence)]
        kinds = [(m, m.group(1), m.group(2).lower()) for m in _IS_A.finditer(sentence)]
        kinds += [(m, m.group(2), m.group(1).lower()) for m in _THE_X.finditer(sentence)]
        claims += [(m, f"{name} is a {noun}", name, _kind_fits(roles.kinds[name], noun))
                   for m, name, noun in kinds if name in roles.kinds]
        for match, claim, name, supported in claims:
            if supported or claim in found or name not in tokens:
                continue
            if within(advice, match.start()) or negated(sentence, match.start(), match.end()):
                continue
            found[claim] = {"kind": "false role", "claim": claim, "text": quoted(sentence)}
    return list(found.values())
