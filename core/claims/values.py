"""False start values: the answer says one of the code's names starts as (or is set to) a value that no
assignment of the code gives it.

"`seen` gets set to `None`" of ``seen = set()``, "it starts `n` at `limit`" of ``n = 0``, "`count` starts at 1"
of ``count = 0``. Checked only where the code's every binding of the name is a plain assignment of a value the
syntax tree can tell: a number, a string, True/False/None, a list, tuple, set or dict display (or ``list()``,
``dict()`` …) or another name. A name that is a parameter, a loop's or ``with``'s target, unpacked, imported or
assigned anything else (a call, an expression) may hold anything, and is left alone; so is a claimed value the
sentence does not spell plainly (a number, a word for one up to ten, True/False/None, "an empty list", a literal
or a name in backticks). "Starts as" is held to every assignment of the name; "is set to" too, unless the code
also changes the name in place (``n += 2``), when the value at some point is unknown.
"""

from __future__ import annotations

import ast
import re
from functools import lru_cache

from mafioso.core.claims.text import FENCE, advice_from, negated, quoted, sentences, within
from mafioso.prompts.facts import CACHED_PASTES, DEFINITION_NODES, bound_otherwise, parse

__all__ = ["false_values"]

_NAME = r"`([A-Za-z_]\w*)`"
# the value: a literal or a name in backticks, a number, a number's word, True/False/None, "an empty <kind>"
_VALUE = (r"(`[^`\n]{1,40}`|-?\d+(?:\.\d+)?\b|(?:zero|one|two|three|four|five|six|seven|eight|nine|ten)\b|"
          r"True\b|False\b|None\b|an?\s+empty\s+(?:list|dict|dictionary|set|string|tuple)\b)")
_STARTS = (re.compile(_NAME + r"\s+(?:starts|begins)(?:\s+(?:out|off))?\s+(?:as|at|from)\s+" + _VALUE),
           re.compile(r"\b(?:starts|begins|initiali[sz]es)\s+" + _NAME + r"\s+(?:at|as|to|from)\s+" + _VALUE,
                      re.IGNORECASE))
_SET_TO = (re.compile(_NAME + r"\s+(?:is|gets|was)\s+(?:first\s+|initially\s+)?(?:set|initiali[sz]ed)\s+(?:to|as)\s+"
                      + _VALUE),
           re.compile(r"\bsets\s+" + _NAME + r"\s+to\s+" + _VALUE))
_WORDS = {word: number for number, word in enumerate(
    "zero one two three four five six seven eight nine ten".split())}
_EMPTY_CALLS = {"list": "list", "dict": "dict", "set": "set", "tuple": "tuple", "str": "string"}
_KIND_WORDS = {"dictionary": "dict"}


def _literal(node: ast.AST) -> tuple | None:
    """A value as compared here: ("number", n), ("bool", b), ("none",), ("string", s), (kind, empty) for a set or
    dict display or an argument-less ``list()`` …, (kind, empty, first item) for a list or tuple display, ("name",
    id); None for anything else."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        inner = _literal(node.operand)
        return ("number", -inner[1]) if inner and inner[0] == "number" else None
    if isinstance(node, ast.Constant):
        value = node.value
        if value is None:
            return ("none",)
        if isinstance(value, bool):
            return ("bool", value)
        if isinstance(value, (int, float)):
            return ("number", value)
        return ("string", value) if isinstance(value, str) else None
    if isinstance(node, (ast.List, ast.Tuple)):  # and the first item: `COINS` "starts at 25" of (25, 10, 5)
        return (type(node).__name__.lower(), not node.elts, _literal(node.elts[0]) if node.elts else None)
    if isinstance(node, ast.Set):
        return ("set", not node.elts)
    if isinstance(node, ast.Dict):
        return ("dict", not node.keys)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _EMPTY_CALLS:
        if node.args or node.keywords:
            return None  # list(xs), dict(a): a copy of something
        return ("string", "") if node.func.id == "str" else (_EMPTY_CALLS[node.func.id], True, None)
    if isinstance(node, ast.Name):
        return ("name", node.id)
    return None


def _claimed(text: str) -> tuple | None:
    """The value a sentence names, in :func:`_literal`'s terms, or None when it is not spelled plainly."""
    if text.startswith("`"):
        try:
            tree = ast.parse(text.strip("`"), mode="eval").body
        except SyntaxError:
            return None
        return _literal(tree)
    if text in ("True", "False"):
        return ("bool", text == "True")
    if text == "None":
        return ("none",)
    if text.lower() in _WORDS:
        return ("number", _WORDS[text.lower()])
    if text.lower().split()[-1] in ("list", "dict", "dictionary", "set", "string", "tuple"):
        kind = text.lower().split()[-1]
        return (_KIND_WORDS.get(kind, kind), True)
    return ("number", float(text) if "." in text else int(text))


@lru_cache(maxsize=CACHED_PASTES)  # the post-check reads one answer in passes against the same code
def _bindings(code: str) -> tuple[dict[str, list[tuple]], set[str], set[str]] | None:
    """None when the code does not parse; else each name's assigned values (:func:`_literal`, None where
    unknown), the names bound any other way (parameters, targets, imports, definitions, unpacking), and the
    names changed in place (``n += 2``)."""
    tree = parse(code)
    if tree is None:
        return None
    values: dict[str, list[tuple | None]] = {}
    other: set[str] = set()
    changed: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                if isinstance(target, ast.Name):
                    values.setdefault(target.id, []).append(_literal(node.value))
                else:
                    other |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            changed.add(node.target.id)
        elif isinstance(node, DEFINITION_NODES):
            other.add(node.name)
        else:  # loop and with targets, parameters, imports, :=, except ... as, global, del
            other |= bound_otherwise(node)
    return values, other, changed


def _fits(claimed: tuple, value: tuple) -> bool:
    """True if an assignment of ``value`` makes the claim of ``claimed`` true."""
    if claimed[0] == "number" and value[0] in ("number", "bool"):
        return claimed[1] == value[1]
    if claimed[0] in ("list", "tuple", "set", "dict", "string") and claimed[1] is True:
        return value[0] == claimed[0] and (value[1] is True if claimed[0] != "string" else value[1] == "")
    if value[0] in ("list", "tuple") and value[2] is not None and _fits(claimed, value[2]):
        return True
    return claimed[:2] == value[:2]


def false_values(code: str, answer: str) -> list[dict]:
    """Start-value claims (module docstring) that the code's assignments contradict, each ``{"kind": "false
    role", "claim": "x = 0", "text": ...}``; none when the code does not parse."""
    bindings = _bindings(code)
    if bindings is None:
        return []
    values, other, changed = bindings
    found: dict[str, dict] = {}
    for sentence in sentences(FENCE.sub(" ", answer)):
        advice = advice_from(sentence)
        matches = [(m, False) for pattern in _STARTS for m in pattern.finditer(sentence)]
        matches += [(m, True) for pattern in _SET_TO for m in pattern.finditer(sentence)]
        for match, any_time in matches:
            name, said = match.group(1), match.group(2)
            known = values.get(name)
            if not known or name in other or None in known or (any_time and name in changed):
                continue
            if within(advice, match.start()) or negated(sentence, match.start(), match.end()):
                continue
            claimed = _claimed(said)
            if claimed is None or any(value[0] == "name" for value in known) and claimed[0] != "name":
                continue  # a name assigned another name may hold anything
            if any(_fits(claimed, value) for value in known):
                continue
            claim = f"{name} = {said.strip('`')}"
            found.setdefault(claim, {"kind": "false role", "claim": claim, "text": quoted(sentence)})
    return list(found.values())
