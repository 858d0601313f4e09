"""Exceptions the code cannot raise: "the second line would raise a `KeyError`" of a dict comprehension with no
subscript, "which would raise `ValueError`" of a countdown loop (the Qwen adapter, unseen code, read by hand).

Only a few exceptions are checked, each by what in the code may raise it (:data:`RAISED_BY`); code whose
exceptions are out of sight is not read at all: a ``raise`` of its own, an import outside a few pure standard
modules (a library may raise anything), or a call of a function or method neither defined in the code nor known
here (:data:`KNOWN_CALLS`). A "would raise" is checked like a "raises": no input makes code raise what nothing in
it can. A denial ("a set never raises a `KeyError`") is not a claim. The code is read, never run.
"""

from __future__ import annotations

import ast
import re
from functools import lru_cache

from mafioso.core.claims.printable import impure_import
from mafioso.core.claims.text import FENCE, SENTENCE, blank, negated, quoted
from mafioso.prompts.facts import CACHED_PASTES, call_name, parse

__all__ = ["CHECKED", "RAISED_BY", "impossible_exceptions", "raisable"]

#: For each checked exception, the calls (by name or method name) that may raise it; subscripts, operators,
#: generators and the rest are read in :func:`raisable`.
RAISED_BY: dict[str, frozenset[str]] = {
    "KeyError": frozenset({"pop", "popitem", "remove", "format", "format_map", "__getitem__"}),
    "IndexError": frozenset({"pop", "popleft", "heappop", "choice", "format", "__getitem__"}),
    "ValueError": frozenset({"int", "float", "complex", "index", "remove", "min", "max", "sqrt", "log", "log2",
                             "log10", "acos", "asin", "range", "strptime", "fromisoformat", "mean", "median",
                             "mode", "stdev", "variance", "choice", "sample", "randrange", "randint", "chr",
                             "split", "rsplit", "partition", "encode", "decode", "format", "Decimal", "Fraction",
                             "loads", "load", "dataclass", "field", "pow", "round", "date", "datetime", "time"}),
    "ZeroDivisionError": frozenset({"divmod", "fmod", "Fraction", "pow", "mean", "statistics"}),
    "FileNotFoundError": frozenset({"open", "read_text", "read_bytes", "write_text", "write_bytes", "listdir",
                                    "scandir", "stat", "getsize", "getmtime", "unlink", "rename", "replace", "glob",
                                    "iterdir", "rmdir", "walk", "chdir"}),
    "StopIteration": frozenset({"next"}),
    "JSONDecodeError": frozenset({"loads", "load"}),
}

#: Calls whose exceptions are known here (builtins and common methods): any other call that the code does not
#: define may raise anything, and the code is not read.
KNOWN_CALLS = frozenset().union(*RAISED_BY.values()) | frozenset({
    "print", "len", "sum", "sorted", "reversed", "list", "dict", "set", "frozenset", "tuple", "str", "repr", "bool",
    "enumerate", "zip", "map", "filter", "any", "all", "abs", "isinstance", "issubclass", "type", "super", "iter",
    "id", "hash", "ord", "bin", "hex", "oct", "lower", "upper", "title", "capitalize", "casefold", "swapcase",
    "strip", "lstrip", "rstrip", "join", "append", "extend", "insert", "items", "keys", "values", "get",
    "setdefault", "update", "copy", "count", "startswith", "endswith", "isdigit", "isalpha", "isalnum", "isupper",
    "islower", "isspace", "isnumeric", "isdecimal", "zfill", "center", "ljust", "rjust", "sort", "clear", "add",
    "discard", "union", "intersection", "difference", "symmetric_difference", "issubset", "issuperset",
    "most_common", "Counter", "defaultdict", "OrderedDict", "deque", "namedtuple", "appendleft", "extendleft",
    "popleft", "rotate", "elements", "subtract", "total", "floor", "ceil", "trunc", "fabs", "hypot", "gcd", "lcm",
    "isclose", "factorial", "comb", "perm", "prod", "fsum", "exp", "sin", "cos", "tan", "radians", "degrees",
    "findall", "finditer", "search", "match", "fullmatch", "sub", "subn", "compile", "group", "groups", "span",
    "start", "end", "escape", "chain", "islice", "accumulate", "groupby", "product", "permutations", "combinations",
    "repeat", "cycle", "starmap", "takewhile", "dropwhile", "zip_longest", "reduce", "partial", "wraps",
    "lru_cache", "cache", "asdict", "astuple", "heappush", "heappop", "heapify", "nlargest", "nsmallest", "bisect",
    "bisect_left", "bisect_right", "insort", "shuffle", "seed", "random", "uniform", "deepcopy", "itemgetter",
    "attrgetter", "dedent", "fill", "wrap", "expandtabs", "splitlines", "find", "rfind", "translate", "maketrans",
    "callable", "vars", "dir", "object", "property", "staticmethod", "classmethod", "setattr", "hasattr",
    "__init__", "__repr__", "__str__"})

_RAISES = re.compile(r"\b([A-Z]\w*Error|StopIteration)\b")
#: The exceptions this check reads: RAISED_BY's, and RecursionError (a function that names itself)
CHECKED = frozenset(RAISED_BY) | {"RecursionError"}


@lru_cache(maxsize=CACHED_PASTES)  # the post-check reads one answer in passes against the same code
def raisable(code: str) -> frozenset[str] | None:
    """The checked exceptions (:data:`RAISED_BY`) something in ``code`` may raise, or None when its exceptions are
    out of sight (module docstring) or it does not parse."""
    tree = parse(code)
    if tree is None:
        return None
    nodes = list(ast.walk(tree))
    defined = {node.name for node in nodes if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, (ast.Raise, ast.Await, ast.AsyncFunctionDef)) or impure_import(node):
            return None
        if isinstance(node, ast.Call):
            name = call_name(node).rsplit(".", 1)[-1]  # a method by its own name: xs.pop() is pop
            if name not in KNOWN_CALLS and name not in defined:
                return None
            found.update(error for error, calls in RAISED_BY.items() if name in calls)
        elif (isinstance(node, ast.Subscript) and isinstance(node.ctx, (ast.Load, ast.Del))
              or isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Subscript)):  # counts[ch] += 1
            found.update(("KeyError", "IndexError"))
        elif isinstance(node, (ast.BinOp, ast.AugAssign)) and isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod,
                                                                                   ast.Pow)):
            found.add("ZeroDivisionError")  # 0 ** -1 too
        elif (isinstance(node, (ast.Tuple, ast.List)) and isinstance(node.ctx, ast.Store)
              or isinstance(node, ast.Name) and node.id == "dataclass"):
            found.add("ValueError")  # unpacking; a dataclass refuses a mutable default
        elif isinstance(node, (ast.Yield, ast.YieldFrom)):
            found.add("StopIteration")
        elif isinstance(node, ast.FunctionDef):
            # a function that names itself (a call, or a property reading its own attribute) may recurse
            if any(isinstance(inner, (ast.Name, ast.Attribute)) and getattr(inner, "id", getattr(inner, "attr", ""))
                   == node.name for inner in ast.walk(node) if inner is not node):
                found.add("RecursionError")
    return frozenset(found)


def impossible_exceptions(code: str, answer: str) -> list[dict]:
    """Checked exceptions the answer says the code raises (or would) and nothing in it can, each a false concept
    ``{"kind": "false concept", "claim": "raises KeyError", "text": ...}``; none when ``code`` is out of sight."""
    possible = raisable(code)
    if possible is None:
        return []
    found, seen = [], set()
    prose = FENCE.sub(blank, answer)
    for at in SENTENCE.finditer(prose):
        sentence = at.group(0)
        for match in _RAISES.finditer(sentence):
            error = match.group(1)
            if (error not in CHECKED or error in possible or error in seen or error in code
                    or negated(sentence, *match.span())):
                continue
            seen.add(error)
            found.append({"kind": "false concept", "claim": f"raises {error}",
                          "text": quoted(answer[at.start():at.end()])})
    return found
