"""What a piece of code does, read from its syntax tree (never by running it).

:func:`code_features` is the set of constructs the code really has, named from :data:`FEATURES`. The
facts sheet in every prompt and the ``grounded`` check of ``mafioso eval`` both read it, so "this code
recurses" means the same thing to the model and to the metric.
"""

from __future__ import annotations

import ast

__all__ = ["FEATURES", "code_features", "parse"]

#: Every feature name :func:`code_features` can report.
FEATURES = frozenset({
    "recursion",           # a function calls itself (by name, or as self./cls. method)
    "generator",           # a function body yields (yield / yield from)
    "generator expression",
    "list comprehension", "dict comprehension", "set comprehension",
    "decorator",           # any def or class with a decorator
    "dataclass",           # @dataclass / @dataclasses.dataclass
    "async",               # async def, await, async for, async with
    "lambda",
    "class",
    "print",               # a call to print()
    "raise",
    "try",                 # try/except (catches exceptions)
    "loop",                # for / while (comprehensions are not counted here)
    "sort",                # sorted(), .sort(), heapq, min/max with key= are not sorting
    "file read",           # open() in a read mode, .read_text(), .read_bytes(), csv/json load from a file
    "file write",          # open() in w/a/x mode, .write_text(), .write_bytes()
    "with",                # a context manager
    "import",
    "return",              # a return with a value
    "network",             # requests/urllib/httpx/aiohttp/socket calls
})

_NETWORK_MODULES = ("requests", "urllib", "httpx", "aiohttp", "socket", "http.client")
_OPEN_MODULES = ("io", "os", "gzip", "bz2", "lzma", "codecs", "tarfile", "zipfile", "builtins")
# Library calls that take a path and load from it, or save to it.
_PATH_LOADS = ("torch.load", "np.load", "numpy.load", "joblib.load", "pickle.load", "json.load")
_PATH_SAVES = ("torch.save", "np.save", "numpy.save", "np.savez", "numpy.savez", "joblib.dump", "pickle.dump",
               "json.dump")


def parse(code: str) -> ast.Module | None:
    """The syntax tree of ``code``, or None when it is not parseable as Python."""
    try:
        return ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # ValueError: null bytes
        return None


def _call_name(node: ast.Call) -> str:
    """``print`` for ``print(x)``, ``sort`` for ``xs.sort()``, ``requests.get`` for ``requests.get(u)``."""
    func = node.func
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    elif parts:  # a method of an expression: super().__init__() is "().__init__", not a call of __init__
        parts.append("()")
    return ".".join(reversed(parts))


def _open_mode(node: ast.Call) -> str:
    # open(file, mode) and gzip.open(file, mode) take the mode second; a Path's .open(mode) takes it first
    module_level = _call_name(node) in ("open", "io.open") or _call_name(node).split(".")[0] in _OPEN_MODULES
    position = 1 if module_level else 0
    mode = (node.args[position] if len(node.args) > position
            else next((k.value for k in node.keywords if k.arg == "mode"), None))
    return mode.value if isinstance(mode, ast.Constant) and isinstance(mode.value, str) else "r"


def _own_nodes(function: ast.AST):
    """The nodes of a function body, not descending into nested functions, lambdas or classes."""
    stack = list(ast.iter_child_nodes(function))
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            stack.extend(ast.iter_child_nodes(node))


def recurses(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """True if the function calls itself: ``name(...)``, ``self.name(...)`` or ``cls.name(...)``."""
    for node in _own_nodes(function):
        if isinstance(node, ast.Call):
            name = _call_name(node)
            if name in (function.name, f"self.{function.name}", f"cls.{function.name}"):
                return True
    return False


def yields(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """True if the function's own body has ``yield`` or ``yield from`` (it is a generator)."""
    return any(isinstance(node, (ast.Yield, ast.YieldFrom)) for node in _own_nodes(function))


_NODE_FEATURES = {
    ast.GeneratorExp: "generator expression", ast.ListComp: "list comprehension",
    ast.DictComp: "dict comprehension", ast.SetComp: "set comprehension", ast.Lambda: "lambda",
    ast.ClassDef: "class", ast.Raise: "raise", ast.Try: "try", ast.For: "loop", ast.While: "loop",
    ast.AsyncFor: "async", ast.AsyncWith: "async", ast.Await: "async", ast.AsyncFunctionDef: "async",
    ast.With: "with", ast.Import: "import", ast.ImportFrom: "import",
}
if hasattr(ast, "TryStar"):
    _NODE_FEATURES[ast.TryStar] = "try"


def code_features(code: str) -> frozenset[str] | None:
    """The :data:`FEATURES` the code has, or None when it is not parseable as Python."""
    tree = parse(code)
    if tree is None:
        return None
    found: set[str] = set()
    for node in ast.walk(tree):
        feature = _NODE_FEATURES.get(type(node))
        if feature:
            found.add(feature)
        if isinstance(node, ast.AsyncFor):
            found.add("loop")
        if isinstance(node, ast.AsyncWith):
            found.add("with")
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            if recurses(node):
                found.add("recursion")
            if yields(node):
                found.add("generator")
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.decorator_list:
            found.add("decorator")
            for decorator in node.decorator_list:
                target = decorator.func if isinstance(decorator, ast.Call) else decorator
                if ast.unparse(target).split(".")[-1] == "dataclass":
                    found.add("dataclass")
        if isinstance(node, ast.Return) and node.value is not None:
            found.add("return")
        if isinstance(node, ast.Call):
            name = _call_name(node)
            last = name.rsplit(".", 1)[-1]
            if name == "print":
                found.add("print")
            elif name in ("sorted", "heapq.nsmallest", "heapq.nlargest") or last == "sort" or last == "sort_values":
                found.add("sort")
            elif name in ("open", "io.open") or last == "open":
                mode = _open_mode(node)
                found.add("file write" if any(c in mode for c in "wax+") else "file read")
                if "+" in mode:
                    found.add("file read")
            elif last in ("read_text", "read_bytes", "read_csv", "read_json", "loadtxt") or name in _PATH_LOADS:
                found.add("file read")
            elif (last in ("write_text", "write_bytes", "to_csv", "to_json", "savefig", "savetxt")
                  or name in _PATH_SAVES):
                found.add("file write")
            if name.split(".")[0] in _NETWORK_MODULES or name.startswith(("urllib.request", "http.client")):
                found.add("network")
    return frozenset(found)
