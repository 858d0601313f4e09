"""Denied names: the answer says the code has no `X`, and the code has it.

"`Counter` is a plain class: it has no `__init__`" of a class that defines one, "there's no `helper` function" of
code that defines `helper`, "no `print`, no mess" of code that prints. The name is the code's, so the invented-name
check lets it pass, and no construct is denied, so the concept check does too.

Read narrowly, so that a true sentence is never dropped:

- only a plain denial of having it, right before the backticked name, said of the code or one of its names ("it
  has no", "`Counter` lacks", "the class with no", "doesn't define", "there's no") or a listed "no" ("no `x`, no
  `y`"), never of a type or a value ("None has no `split`", "a dict has no `add`": true whatever the code has);
  then at most a noun of what it is ("method", "function", "variable", "attribute", "call", "import") and the end
  of the clause. "Called without `tip`", "no `key` argument", "no `x` needed" and "never calls `f`" are about a
  call or a need, not the code's having it;
- only names, never keywords ("no `else`", "no `for` loop": those are the constructs' business,
  :mod:`mafioso.core.claims.concepts`), nor a parameter (a call may pass none for it) or a keyword argument's
  name (``key=``: "max with no `key`" may be said of another call);
- a name counts only where the code itself has it (its syntax tree as a reader takes the paste,
  :func:`mafioso.prompts.facts.parse`: a definition, an assignment, a use, an attribute, an import), never in a
  string or a comment; a paste that does not parse is not read;
- said after a function or class of the code is named in the sentence ("`bump` has no `return`"), only that
  definition's own source counts.
"""

from __future__ import annotations

import ast
import keyword
import re

from mafioso.core.claims.text import FENCE, SPAN, advice_from, quoted, sentences, within
from mafioso.prompts.facts import DEFINITION_NODES, parse

__all__ = ["denied_names"]

_NOUNS = (r"method|function|class|variable|attribute|field|constant|call|import|module|helper|decorator|"
          r"property|list|dict|dictionary|set|counter")
# Who is said to lack it: the code or one of its names ("it has no", "`Counter` lacks", "the class with no", "there's
# no"), or a listed "no" ("no `x`, no `y`"); never a type or value ("None has no `split`", "a dict has no `add`":
# true of the type, whatever the code has).
_WHO = (r"(?:`[A-Za-z_]\w*(?:\(\))?`|\bit|\b(?:(?:the|a|an|this|that)\s+(?:plain\s+|little\s+|whole\s+)?)?"
        r"(?:class|function|method|code|snippet|script|module|program)|\bthis)")
_DENIED = re.compile(
    r"(?:" + _WHO + r"\s+(?:(?:also|still|just|even)\s+)?(?:has\s+no|have\s+no|with\s+no|lacks?|"
    r"(?:doesn't|does\s+not|never)\s+(?:have|define))|\bthere'?s\s+no|\bthere\s+(?:is|are)\s+no|"
    r"(?:(?<=^)|(?<=[,;:]\s))no)"
    r"(?:\s+(?:a|an|any|single|such))?\s+`([A-Za-z_]\w*)(?:\(\))?`"
    r"(?:\s+(?:" + _NOUNS + r")s?)?"
    r"(?=\s*(?:[,.;:!?)\u2014\u2013]|$)|\s+(?:at all|here|anywhere|in sight|and|but|so|just|only|either|or)\b)",
    re.IGNORECASE)


def _names(tree: ast.AST) -> set[str]:
    """The names a syntax tree has: definitions, uses, attributes, imports; not its parameters (a call may pass
    none for one: "called with no `tip`") nor a call's keyword names (``key=``: "max with no `key`" may be said
    of another call)."""
    has: set[str] = set()
    parameters: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            has.add(node.id)
        elif isinstance(node, ast.Attribute):
            has.add(node.attr)
        elif isinstance(node, DEFINITION_NODES):
            has.add(node.name)
        elif isinstance(node, ast.alias):
            has.update(filter(None, (node.asname, *node.name.split("."))))
        elif isinstance(node, ast.arg):
            parameters.add(node.arg)
    return has - parameters


def _definitions(tree: ast.AST) -> dict[str, ast.AST]:
    """The code's functions and classes by name (the first of a name)."""
    found: dict[str, ast.AST] = {}
    for node in ast.walk(tree):
        if isinstance(node, DEFINITION_NODES):
            found.setdefault(node.name, node)
    return found


def denied_names(code: str, answer: str) -> list[dict]:
    """The answer's plain denials that the code has a name it has (module docstring), as false concepts the
    answer denies."""
    tree = parse(code)
    if tree is None:
        return []
    whole = _names(tree)
    definitions = _definitions(tree)
    found: dict[str, dict] = {}
    for sentence in sentences(FENCE.sub(" ", answer)):
        advice = advice_from(sentence)
        for match in _DENIED.finditer(sentence):
            name = match.group(1)
            if name in found or keyword.iskeyword(name) or within(advice, match.start()):
                continue
            before = sentence[:match.start(1) - 1]  # up to the denied name's opening backtick
            named = (span.strip().removesuffix("()") for span in SPAN.findall(before))
            subjects = [subject for subject in named if subject in definitions and subject != name]
            if name in (_names(definitions[subjects[-1]]) if subjects else whole):
                found[name] = {"kind": "false concept", "claim": f"no `{name}`", "denied": True,
                               "text": quoted(sentence)}
    return list(found.values())
