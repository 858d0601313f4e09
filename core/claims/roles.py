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
- A returned-name claim ("it returns `seen`", "`safe_div` hands back `ZeroDivisionError`", "`ZeroDivisionError`,
  which the function returns") is false when the name is in none of what the function named hands back (or, said
  of "it" or "the function", of any ``return``, ``yield`` or lambda of the code), nor assigned to what it hands
  back (:func:`mafioso.prompts.facts.handed_back`). Left alone: True/False/None, a name bound to what a call of
  the code's own function hands back ("`squares_gen` hands back `gen`"), a function the code does not define
  ("`groupby` returns `avg`"), a test's check ("checks that `f` returns `expected`"); ``self.n`` is ``n``.
- A kind claim is checked only for a name the code binds as one kind alone
  (:class:`mafioso.prompts.facts.NameRoles`: a literal, a display, a comparison, a builtin's value such as
  ``sorted(...)``, an instance of a plain class of its own), and only where the kind's noun heads the phrase
  ("`raw` is a messy shopping list" and "a class attribute" are not kind claims); "`f` returns a dict" (or "`f`
  takes ..., then returns a dict", past a persona's opener) only of a function whose every returned value is of
  one kind, or of a builtin the code calls ("`set` returns a dictionary").
"""

from __future__ import annotations

import re

from mafioso.core.claims.names import code_tokens
from mafioso.core.claims.text import FENCE, advice_from, blank, negated, quoted, sentences, within
from mafioso.prompts.facts import NameRoles, name_roles

__all__ = ["false_roles"]

# Verbs that say the name is what a loop binds or walks; "runs `x` through `upper`" (a function applied) and
# "counts `n` down" are left alone: their names are not a loop's as often as not.
_LOOPS = re.compile(r"\b(?:loops?|looping|iterates?|iterating|walks?|walking)\s+`([A-Za-z_]\w*)`\s+"
                    r"(?:over|through|across|along|from)\b", re.IGNORECASE)
_CALLS = re.compile(r"\b(?:calls?|calling|invokes?|invoking)\s+`([A-Za-z_][\w.]*?)(?:\(\))?`", re.IGNORECASE)
# Kind nouns and the kind each names; a few plain adjectives may stand before one.
_NOUNS = {"dict": "dict", "dictionary": "dict", "list": "list", "set": "set", "tuple": "tuple", "string": "string",
          "integer": "number", "int": "number", "number": "number", "float": "number", "boolean": "bool",
          "bool": "bool", "function": "function",
          "method": "function", "class": "class", "dataclass": "class"}
_ADJECTIVE = (r"(?:(?:new|nested|plain|simple|empty|sorted|big|small|long|short|single|whole|fresh|flat|regular|"
              r"ordinary|mutable|immutable|normal|bare|little|tiny|huge|lone)\s+)?")
_NOUN = "(" + "|".join(_NOUNS) + r")\b"
# The noun heads its phrase: what follows ends it or starts a clause ("a dict keyed by", "a list, and").
_HEAD = (r"(?=\s*(?:[,.;:!?)]|$|(?:that|which|with|of|keyed|holding|containing|mapping|indexing|where|whose|and|so|"
         r"but|for|from|in|on|to|built|made|called|named|like|here|there|now)\b))")
_IS_A = re.compile(r"`([A-Za-z_]\w*)`\s+(?:is|was|becomes|stays|remains|(?:comes|ends)\s+(?:out|up)\s+as)\s+"
                   r"(?:just\s+|only\s+|still\s+|really\s+)?"
                   r"(?:an?|the)\s+" + _ADJECTIVE + _NOUN + _HEAD, re.IGNORECASE)
_HANDS_BACK = r"(?:returns|hands back|gives back)"
# "`set` returns a dictionary", "`merge` hands back a new list": the kind of what a function or builtin makes
_RETURNS_A = re.compile(r"`([A-Za-z_]\w*)(?:\(\))?`\s+(?:then\s+|also\s+|just\s+|only\s+|finally\s+)?"
                        + _HANDS_BACK + r"\s+an?\s+" + _ADJECTIVE + _NOUN + _HEAD, re.IGNORECASE)
_RETURNS = re.compile(r"`([A-Za-z_]\w*)(?:\(\))?`\s+(?:then\s+|also\s+|just\s+|only\s+|finally\s+)?"
                      + _HANDS_BACK + r"\b(?!\s+(?:nothing|None|`None`|no\b))", re.IGNORECASE)
# What the code hands back: "it returns `total`", "`f` hands back `x`", "`x`, which the function returns". Who
# hands it back is said right before the verb: a name in backticks, "it" or "the function" (the code), or "and",
# "then" or a comma, whose subject is the sentence's own ("It takes `a` and returns `b`"); any other ("the query
# returns `drafts`", "`groupby` on `team` returns `avg`") is left alone. A literal is not a name and never matches.
_SUBJECT = r"`[A-Za-z_]\w*(?:\(\))?`|\bit|\bthe\s+(?:function|method|lambda|generator)|\bthis\s+function"
_ADVERB = r"\s+(?:(?:then|also|just|only|finally|simply)\s+)?"
_RETURNS_NAME = re.compile("(" + _SUBJECT + r"|\band|\bthen|,)" + _ADVERB + _HANDS_BACK
                           + r"\s+`([A-Za-z_][\w.]*?)(?:\(\))?`", re.IGNORECASE)
# "`word_lengths` takes a sentence ..., then returns a list" of a function that returns a dict: the kind of what
# "and"/"then" hands back, said of the sentence's own subject (as _RETURNS_NAME finds it)
_AND_RETURNS_A = re.compile(r"(?:\band|\bthen|,)" + _ADVERB + _HANDS_BACK + r"\s+an?\s+" + _ADJECTIVE + _NOUN + _HEAD,
                            re.IGNORECASE)
_NAME_RETURNED = re.compile(r"`([A-Za-z_][\w.]*?)(?:\(\))?`,?\s+which\s+(?:is\s+what\s+)?(" + _SUBJECT + ")"
                            + _ADVERB + _HANDS_BACK + r"\b", re.IGNORECASE)
# The sentence's own subject, for "and returns": "It ...", "The function ...", "`f` ...".
_LEAD = re.compile(r"\s*(?:(it|the\s+function|the\s+method|this\s+function)\b|(`[A-Za-z_]\w*(?:\(\))?`))",
                   re.IGNORECASE)
# A persona's opener before the subject ("Listen, kid: `f` takes ..."), looked past for kind claims only ("Pull up a
# chair: `double` is called with 2 and returns `expected`" says what a test expects)
_OPENER = re.compile(r"\s*[^:`.]{1,40}:\s+")
# A clause with a subject of its own: "`retry` returns `decorator`, which takes `func` and returns `wrapper`".
_RELATIVE = re.compile(r"\b(?:which|that|who|whose|where|when|while|if|so|but|because)\b|[;:]", re.IGNORECASE)
# A test's check, not a claim about what the code returns: "checks that `action` returns `expected`".
_CHECKED = re.compile(r"\b(?:checks?|checking|asserts?|asserting|tests?|testing|verif(?:y|ies)|ensures?|expects?|"
                      r"makes?\s+sure)\s+(?:that\s+)?$", re.IGNORECASE)
_CHECK_WINDOW = 30  # characters before the claim searched for a check
_LITERALS = frozenset({"True", "False", "None"})
_INSTEAD_OF = re.compile(r"\binstead of\b", re.IGNORECASE)
_THE_X = re.compile(r"\b(?:the|an?)\s+" + _ADJECTIVE + _NOUN + r"\s+`([A-Za-z_]\w*)`", re.IGNORECASE)
# "takes `letters`, a list of ints" of a parameter the code's own call gives a string
_APPOSITIVE = re.compile(r"`([A-Za-z_]\w*)`,\s+an?\s+" + _ADJECTIVE + _NOUN + _HEAD, re.IGNORECASE)
# "It keeps `n` as a tuple" of a number (the shipped Gemma, unseen code)
_KEPT_AS = re.compile(r"\b(?:keeps?|keeping|stores?|storing|holds?|holding|saves?|saving|tracks?|tracking)\s+"
                      r"`([A-Za-z_]\w*)`\s+as\s+(?:an?|the)\s+" + _ADJECTIVE + _NOUN + _HEAD, re.IGNORECASE)


def _kind_fits(kind: str, noun: str) -> bool:
    """True if a name of ``kind`` may be called a ``noun`` (a class may subclass ``dict``, a plain class may not:
    "`Counter` is a plain list" of ``class Counter:``; a bool is a number; an instance of a plain class, an
    "object", is none of them)."""
    return kind == _NOUNS[noun] or (kind == "class" and _NOUNS[noun] != "function") or (
        kind == "plain class" and _NOUNS[noun] == "class") or (kind == "bool" and _NOUNS[noun] == "number")


def _returned_names(sentence: str) -> list[tuple[re.Match, str | None, str]]:
    """``(match, who hands it back, the name)`` for each name ``sentence`` says is handed back: who is a function
    name, "" for the code as a whole, None for something else (a library call, "the query"); a dotted name by its
    last part (``self.n`` is returned as ``n``)."""
    found = [(m, m.group(1), m.group(2)) for m in _RETURNS_NAME.finditer(sentence)]
    found += [(m, m.group(2), m.group(1)) for m in _NAME_RETURNED.finditer(sentence)]
    lead, lead_until = _lead(sentence)
    return [(m, _who(who, lead, m.start() <= lead_until), name.rsplit(".", 1)[-1]) for m, who, name in found
            if not _CHECKED.search(sentence, max(0, m.start() - _CHECK_WINDOW), m.start())]


def _lead(sentence: str, past_opener: bool = False) -> tuple[re.Match | None, int]:
    """The sentence's own subject (:data:`_LEAD`), after an :data:`_OPENER` where ``past_opener``, and where the
    clause it leads may end."""
    opener = _OPENER.match(sentence) if past_opener else None
    lead = _LEAD.match(sentence, opener.end() if opener else 0)
    clause = _RELATIVE.search(sentence, lead.end()) if lead else None
    return lead, clause.start() if clause else len(sentence)


def _who(word: str, lead: re.Match | None, in_lead_clause: bool) -> str | None:
    """The function said to hand a name back ("" for the code as a whole) from the word before the verb; "and
    returns" has the sentence's subject (``lead``) unless a clause of its own comes between."""
    if word.startswith("`"):
        return word.strip("`()")
    if word.lower() in ("and", "then", ","):
        if lead is None or not in_lead_clause:
            return None
        return lead.group(2).strip("`()") if lead.group(2) else ""
    return ""


def _returns_claim(subject: str | None, name: str) -> str:
    return f"{subject} returns {name}" if subject else f"returns {name}"


def _hands_back(roles: NameRoles, subject: str | None, name: str) -> bool:
    """True unless the code hands ``name`` back nowhere: not in the named function's own returns, or, said of the
    code as a whole (``subject`` ""), in no ``return``, ``yield`` or lambda of it. Anything else (a function the
    code does not define, ``sorted``, ``get``; an unknown subject, None) may hand back anything."""
    if name in roles.received:  # "`squares_gen` hands back `gen`" of ``gen = squares_gen(4)``: what the call gave
        return True
    if subject == "":
        return name in roles.returned
    return subject is None or name in roles.returns_of.get(subject, {name})


def false_roles(code: str, answer: str) -> list[dict]:
    """Loop, call, return and kind claims about the code's own names that its syntax tree contradicts, each
    ``{"kind": "false role", "claim": ..., "text": ...}`` ("loops with x", "calls x", "x returns a value",
    "f returns x", "returns x", "x is a list", "f returns a list"); none when the code does not parse. Names the
    code lacks are :func:`~mafioso.core.claims.names.invented_names`' business."""
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
        # "returns `x` instead of returning None" contrasts two values of the code as it is: not advice
        contrast = advice_from(_INSTEAD_OF.sub(blank, sentence))
        returned = [(m, _returns_claim(subject, name), name, _hands_back(roles, subject, name))
                    for m, subject, name in _returned_names(sentence) if name not in _LITERALS]
        kinds = [(m, m.group(1), m.group(2).lower()) for m in _IS_A.finditer(sentence)]
        kinds += [(m, m.group(2), m.group(1).lower()) for m in _THE_X.finditer(sentence)]
        kinds += [(m, m.group(1), m.group(2).lower()) for pattern in (_APPOSITIVE, _KEPT_AS)
                  for m in pattern.finditer(sentence)]
        claims += [(m, f"{name} is a {noun}", name, _kind_fits(roles.kinds[name], noun))
                   for m, name, noun in kinds if name in roles.kinds]
        lead, lead_until = _lead(sentence, past_opener=True)
        said = [(m, m.group(1), m.group(2)) for m in _RETURNS_A.finditer(sentence)]
        said += [(m, _who("and", lead, m.start() <= lead_until), m.group(1)) for m in _AND_RETURNS_A.finditer(sentence)]
        claims += [(m, f"{name} returns a {noun.lower()}", name, _kind_fits(roles.return_kinds[name], noun.lower()))
                   for m, name, noun in said if name and name in roles.return_kinds]
        claims = [(*claim, advice) for claim in claims] + [(*claim, contrast) for claim in returned]
        for match, claim, name, supported, spared in claims:
            if supported or claim in found or name not in tokens:
                continue
            if within(spared, match.start()) or negated(sentence, match.start(), match.end()):
                continue
            found[claim] = {"kind": "false role", "claim": claim, "text": quoted(sentence)}
    return list(found.values())
