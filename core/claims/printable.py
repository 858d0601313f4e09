"""What a piece of code can print, read from its syntax tree (never run): the static half of the false-output
check, for chat input and for dataset rows that do not run.

Each ``print`` call is one line of output, spelled as literal characters and *holes*: a number's characters for
a value the code makes a number (a number literal or display's name, a ``range`` loop's target, arithmetic on
numbers, ``len(...)``, a call of one of the code's functions whose every ``return`` is a number, ...),
True/False's for a comparison or a name bound only to booleans, "None" for a call of one of the code's functions
that hands back nothing. ``fizzbuzz`` prints "FizzBuzz", "Fizz", "Buzz" and a number;
so "the last line prints 'None'" is false of it, and so is "it prints Fizz, Buzz or None".

Only code whose every output is in sight is read: one print argument of any other kind (a string variable, an
object, a call's result), a print with ``file=`` or an ``end`` that joins lines, an import outside a few pure
standard modules (a library may print), or another way to write out (``sys.stdout``, ``logging``, ``input``,
``pprint``, ...) and :func:`printable` says None: anything may be printed. A claim is supported when some line
could hold it, in any case and spacing, or when each of its words could be on some line (values listed across
lines: "'Fizz', 'Buzz'").
"""

from __future__ import annotations

import ast
import re
from functools import lru_cache

from mafioso.prompts.facts import CACHED_PASTES, NameRoles, bound_names, bound_otherwise, call_name, name_roles, parse

__all__ = ["PURE_MODULES", "can_print", "impure_import", "printable"]

#: A hole: the characters a value of the kind may print as (lower case; lenient: a number may show as 1e-05,
#: 1,000 through a format spec, inf or nan).
NUMBER = frozenset("0123456789.-+e,_infa")
BOOL = frozenset("truefals")
Line = tuple  # of atoms: a one-character str (literal) or a frozenset (a hole, one or more characters of it)

#: Pure standard modules: their calls print nothing of their own and hand back plain values (any other import
#: may: a library's progress bar, df.info(), a multi-line repr); what they raise is named by call
#: (mafioso.core.claims.exceptions).
PURE_MODULES = frozenset({"math", "cmath", "collections", "itertools", "functools", "dataclasses", "typing",
                          "re", "string", "operator", "heapq", "bisect", "enum", "abc", "decimal", "fractions",
                          "statistics", "datetime", "random", "copy", "textwrap", "__future__"})
# Other ways to write out: calls by name, or by any part of their dotted name.
_OTHER_OUTPUT = frozenset({"pprint", "pp", "input", "help", "exec", "eval", "breakpoint", "display", "print_exc",
                           "stdout", "stderr", "logging", "logger", "log", "warnings", "warn", "traceback",
                           "system", "subprocess", "write", "writelines", "show"})
NONE = frozenset("none")
_HOLES = {"number": [NUMBER], "bool": [BOOL], "none": list("none"), "maybe number": [NUMBER | NONE],
          "maybe bool": [BOOL | NONE]}
_NUMBER_CALLS = frozenset({"len", "int", "float", "round", "abs", "sum", "ord"})
_ARITHMETIC = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow)


def impure_import(node: ast.AST) -> bool:
    """Whether ``node`` imports a module outside :data:`PURE_MODULES` (whose calls may print or raise anything)."""
    if not isinstance(node, (ast.Import, ast.ImportFrom)):
        return False
    modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
    return any(module.split(".")[0] not in PURE_MODULES for module in modules)


@lru_cache(maxsize=CACHED_PASTES)  # the post-check reads one answer in passes against the same code
def printable(code: str) -> tuple[Line, ...] | None:
    """Every line the code's print calls can write (module docstring), or None when its output is not all in
    sight (or it does not parse)."""
    tree = parse(code)
    roles = name_roles(code)
    if tree is None or roles is None:
        return None
    bound = bound_names(tree)
    if "print" in bound:
        return None
    nodes = list(ast.walk(tree))
    called = {id(node.func) for node in nodes if isinstance(node, ast.Call)}
    reader = _Reader(roles, _range_targets(nodes, bound), bound)
    lines = []
    for node in nodes:
        if impure_import(node):
            return None
        elif isinstance(node, ast.Name) and node.id == "print" and id(node) not in called:
            return None  # print passed around: map(print, xs)
        elif isinstance(node, ast.Call):
            name = call_name(node)
            if name == "print":
                line = reader.line(node)
                if line is None:
                    return None
                lines.append(line)
            elif any(part in _OTHER_OUTPUT for part in name.split(".")):
                return None
    return tuple(lines)


def can_print(lines: tuple[Line, ...], claimed: str) -> bool:
    """Whether ``claimed`` could be on one of ``lines`` (any case and spacing), or each of its words on some
    line."""
    text = " ".join(claimed.lower().split()).strip(" .,!?;:")
    if not text or any(_holds(line, text) for line in lines):
        return True
    words = [word for word in re.split(r"[\s,]+", text) if word]
    return len(words) > 1 and all(any(_holds(line, word) for line in lines) for word in words)


def _holds(line: Line, text: str) -> bool:
    """Whether ``text`` is a stretch of some line that ``line`` spells: a walk through its atoms (a hole may
    take any number of its characters), starting and ending anywhere; linear in the line's length per
    character."""
    states = set(range(len(line) + 1))
    for char in text:
        after = set()
        for at in states:
            # a hole may also be left for the atoms after it without taking a character
            while at < len(line):
                atom = line[at]
                if isinstance(atom, frozenset):
                    if char in atom:
                        after.add(at)
                    at += 1
                    continue
                if atom == char:
                    after.add(at + 1)
                break
        if not after:
            return False
        states = after
    return True


class _Reader:
    """Spells print calls as lines of atoms, with what the code tells of its names."""

    def __init__(self, roles: NameRoles, ranged: set[str], bound: set[str]):
        self.kinds, self.returns, self.valueless = roles.kinds, roles.return_kinds, roles.valueless
        self.ranged, self.bound = ranged, bound

    def line(self, call: ast.Call) -> Line | None:
        sep = " "
        for keyword in call.keywords:
            value = keyword.value.value if isinstance(keyword.value, ast.Constant) else None
            if keyword.arg == "sep" and isinstance(value, str):
                sep = value
            elif not (keyword.arg == "end" and value == "\n" or keyword.arg == "flush"):
                return None  # file=, an end that joins lines, **kwargs
        atoms: list = []
        for i, arg in enumerate(call.args):
            part = self.atoms(arg)
            if part is None:
                return None
            atoms += [*(sep.lower() if i else ""), *part]
        return tuple(" " if atom == "\n" else atom for atom in atoms)

    def atoms(self, node: ast.expr) -> list | None:
        """One printed value as atoms, or None when it may be anything."""
        if isinstance(node, ast.Constant):
            text = node.value if isinstance(node.value, str) else repr(node.value)
            return list(" ".join(text.lower().split()) if isinstance(node.value, str) else text.lower())
        if isinstance(node, ast.JoinedStr):
            atoms: list = []
            for value in node.values:
                part = self.atoms(value.value if isinstance(value, ast.FormattedValue) else value)
                if part is None or isinstance(value, ast.FormattedValue) and value.format_spec and part != [NUMBER]:
                    return None
                atoms += part
            return atoms
        return _HOLES.get(self.kind(node))

    def kind(self, node: ast.expr) -> str | None:
        """"number", "bool" or "none" for a value the code makes so, "maybe number" or "maybe bool" for one that
        may also be None (a call of the code's own function), else None."""
        if isinstance(node, ast.Constant):
            value = node.value
            return ("bool" if isinstance(value, bool) else "number" if isinstance(value, (int, float))
                    else "none" if value is None else None)
        if isinstance(node, ast.Name):
            if node.id in self.ranged or self.kinds.get(node.id) == "number":
                return "number"
            return "bool" if self.kinds.get(node.id) == "bool" else None
        if isinstance(node, ast.BinOp) and isinstance(node.op, _ARITHMETIC):
            both = {(self.kind(side) or "").removeprefix("maybe ") for side in (node.left, node.right)}
            return "number" if both <= {"number", "bool"} and "number" in both else None  # None + 1 raises
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.Not):
                return "bool"
            return "number" if (self.kind(node.operand) or "").endswith("number") else None
        if isinstance(node, ast.Compare):
            return "bool"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            name = node.func.id
            if name in _NUMBER_CALLS and name not in self.bound:
                return "number"
            if name in self.valueless:
                return "none"
            if self.returns.get(name) in ("number", "bool") and name not in _NUMBER_CALLS:
                return "maybe " + self.returns[name]  # a def may also end without a return: None
        return None


def _range_targets(nodes: list[ast.AST], bound: set[str]) -> set[str]:
    """The names bound only as the plain target of a loop or comprehension over ``range(...)``."""
    ranged, targets = set(), set()
    for node in nodes:
        if isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)) and isinstance(node.target, ast.Name) \
                and isinstance(node.iter, ast.Call) and isinstance(node.iter.func, ast.Name) \
                and node.iter.func.id == "range" and "range" not in bound:
            ranged.add(node.target.id)
            targets.add(id(node.target))
    other: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load) and id(node) not in targets:
            other.add(node.id)
        elif not isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)) or id(node.target) not in targets:
            other |= bound_otherwise(node)
    return ranged - other
