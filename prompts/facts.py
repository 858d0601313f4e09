"""What a piece of code does, read from its syntax tree (never by running it).

:func:`code_features` is the set of constructs the code really has, named from :data:`FEATURES`. The
facts sheet in every prompt and the ``grounded`` check of ``mafioso eval`` both read it, so "this code
recurses" means the same thing to the model and to the metric. :func:`facts_sheet` turns the tree into the
short list of facts the prompt carries after the code (see prompts/template.txt), e.g. for a recursive
``fact`` and a ``print``::

    - def fact(n): recurses; returns 1 or n * fact(n - 1)
    - top level: calls fact; prints an f-string "5! = {fact(5)}"
    - not in the code: yield, async/await, files, network, exceptions

A paste is read the way a reader takes it (:func:`parse`): as it is, dedented, its fenced code, or as a pasted
run (a ``>>>`` session, or code followed by what it printed and its traceback), whose echoed lines and exception
stand for a run of it (:func:`run_record`); nothing is ever run.

Everything here is iterative or bounded: a deeply nested paste never raises RecursionError, it is read as
"too deeply nested" or abbreviated to "…".
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass
from functools import lru_cache
from itertools import islice

from mafioso.prompts.fences import fenced_blocks
from mafioso.prompts.language import other_language

__all__ = ["DEFINITION_NODES", "FACTS_MAX_CHARS", "FACTS_MAX_TOKENS", "FEATURES", "NameRoles", "bound_names",
           "call_features", "call_name", "code_features", "definition_features", "facts_sheet", "handed_back",
           "name_roles", "parse", "run_record", "source"]

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
    "nested loop",         # a loop or comprehension inside a loop or comprehension, or one of several fors
    "sort",                # sorted(), .sort(), heapq, min/max with key= are not sorting
    "file read",           # open() in a read mode, .read_text(), .read_bytes(), csv/json load from a file
    "file write",          # open() in w/a/x mode, .write_text(), .write_bytes()
    "with",                # a context manager
    "import",
    "return",              # a return with a value
    "network",             # requests/urllib/httpx/aiohttp/socket calls
    "function",            # a def or async def (a lambda is not counted)
    "one-liner",           # three lines of code or fewer, a def whose body is one line, a lambda, a comprehension
                           # or a conditional expression
    "nested comprehension",  # a comprehension with several fors, or one inside another
    "mutable default",     # a parameter whose default is a list, dict or set (a display or a call making one)
    "default parameter",   # a parameter with any default
    "several prints",      # two print calls or more, one that may run more than once (in a loop, comprehension,
                           # def or lambda), or one of several values
})

_NETWORK_MODULES = ("requests", "urllib", "httpx", "aiohttp", "socket", "http.client")
_OPEN_MODULES = ("io", "os", "gzip", "bz2", "lzma", "codecs", "tarfile", "zipfile", "builtins")
# Library calls that take a path and load from it, or save to it.
_PATH_LOADS = ("torch.load", "np.load", "numpy.load", "joblib.load", "pickle.load", "json.load")
_PATH_SAVES = ("torch.save", "np.save", "numpy.save", "np.savez", "numpy.savez", "joblib.dump", "pickle.dump",
               "json.dump")


def parse(code: str) -> ast.Module | None:
    """The syntax tree of ``code`` as a reader takes it (:func:`_reading`), or None when it is not parseable as
    Python."""
    return _parse(code)[0]


def _parse(code: str) -> tuple[ast.Module | None, str]:
    """The tree (:func:`parse`), or None and why the code as it is does not parse (a hint for the facts sheet)."""
    reading = _reading(code)
    if reading is None:
        return None, _parse_text(code)[1]
    return _parse_text(reading[0])[0], ""


_SESSION = re.compile(r">>>(?: |$)")
_TRACEBACK = "Traceback (most recent call last)"
_OUTPUT_LINES = 20  # printed lines a pasted run may show between its code and its traceback
_RAISED = re.compile(r"([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt))(?::|$)")


#: How many pastes the readings and analyses below keep: a worker at 64 concurrent holds as many at once, and each
#: request reads its paste in three phases (prompt, grounding tables, the post-check's passes); 32 thrashed.
CACHED_PASTES = 128


@lru_cache(maxsize=CACHED_PASTES)  # every check of one answer reads the same paste
def _reading(code: str) -> tuple[str, str | None] | None:
    """How a paste reads as Python: ``(source, shown)``, the source that parses and what a pasted run showed
    beside it (None when it is no run); None when no reading parses. Tried in turn: the code as it is, dedented
    (a method pasted with its indentation), the code of its fenced blocks (a Markdown paste); then each of
    those as a pasted run (:func:`_split_run`)."""
    texts = [code]
    if code[:1] in " \t":
        texts.append(textwrap.dedent(code))
    if blocks := fenced_blocks(code):
        texts.append("\n\n".join(block.code for block in blocks))
    for text in texts:
        if _parse_text(text)[0] is not None:
            return text, None
    return next((run for text in texts if (run := _split_run(text)) is not None), None)


def source(code: str) -> str:
    """The Python a paste holds (:func:`_reading`): the code as it is, dedented, its fenced code or a pasted run's
    statements; the code itself when no reading parses. What eval's sandbox runs of a dataset snippet."""
    reading = _reading(code)
    return code if reading is None else reading[0]


def _typed(line: str) -> bool:
    """Whether a line of an interactive session is typed in (after a ``>>>`` or ``...`` prompt)."""
    return line.startswith((">>> ", "... ")) or line in (">>>", "...")


def _split_run(code: str) -> tuple[str, str] | None:
    """``(code, what its run showed)`` of a pasted run: an interactive session (its ``>>>`` and ``...`` lines
    without the prompts, and the lines it echoed), or code followed by what it printed and a traceback (the
    longest start before the traceback that parses, at most :data:`_OUTPUT_LINES` lines before it); None for
    anything else."""
    lines = code.splitlines()
    if _SESSION.match(code.lstrip()):
        source = "\n".join(line[4:] for line in lines if _typed(line))
        return (source, "\n".join(l for l in lines if not _typed(l))) if _parse_text(source)[0] else None
    start = next((i for i, line in enumerate(lines) if line.startswith(_TRACEBACK)), 0)
    for end in range(start, max(start - _OUTPUT_LINES, 0), -1):
        source = "\n".join(lines[:end])
        if source.strip() and _parse_text(source)[0] is not None:
            return source, "\n".join(lines[end:])
    return None


def run_record(code: str) -> tuple[str, str | None] | None:
    """What a pasted run shows beside its code, as a run of it would: the lines it printed or echoed, and the
    exception its last traceback ends with (None when none); None when the code is no pasted run
    (:func:`_reading`). Nothing is run: the paste is its own record."""
    reading = _reading(code)
    if reading is None or reading[1] is None:
        return None
    shown = reading[1].splitlines()
    tracebacks = [i for i, line in enumerate(shown) if line.startswith(_TRACEBACK)]
    raised = None
    if tracebacks:
        raised = next((m.group(1) for line in reversed(shown[tracebacks[-1] + 1:]) if (m := _RAISED.match(line))),
                      None)
    return reading[1], raised


def _parse_text(code: str) -> tuple[ast.Module | None, str]:
    """The tree of exactly ``code``, or None and why not."""
    try:
        return ast.parse(code), ""
    except SyntaxError as exc:
        return None, f"syntax error at line {exc.lineno}" if exc.lineno else "syntax error"
    except ValueError:  # null bytes
        return None, "it contains null bytes"
    except (RecursionError, MemoryError):  # the parser's own nesting limits
        return None, "too deeply nested to read"


def call_name(node: ast.Call) -> str:
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
    module_level = call_name(node) in ("open", "io.open") or call_name(node).split(".")[0] in _OPEN_MODULES
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
            name = call_name(node)
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


@lru_cache(maxsize=CACHED_PASTES)
def code_features(code: str) -> frozenset[str] | None:
    """The :data:`FEATURES` the code has, or None when it is not parseable as Python."""
    tree = parse(code)
    return None if tree is None else _features(tree)


def definition_features(code: str) -> dict[str, frozenset[str]] | None:
    """The :data:`FEATURES` of each ``def`` and ``class`` of the code by name (of its decorators and body), or
    None when the code does not parse. "decorator" is left out: "`wrapper` is not a decorator" and "`greet`
    is not decorated" ask different things of one tree."""
    tree = parse(code)
    if tree is None:
        return None
    found: dict[str, frozenset[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, DEFINITION_NODES):
            features = _features(ast.Module(body=[node], type_ignores=[])) - {"decorator"}
            found[node.name] = found.get(node.name, frozenset()) | features
    return found


@dataclass(frozen=True)
class NameRoles:
    """What the code does with its names: the ones a loop or comprehension binds or walks over (its targets and
    every name in what it iterates), the ones it calls (a call's function, by its last part), and the ones it
    may call out of sight: defined, imported, assigned a lambda, named in a decorator, or passed to a function
    the code does not define (``key=len``, ``map(f, xs)``; passed to one of its own, what it does is in sight);
    the kind of each name that is only ever one: "function" (a ``def``), "class" ("plain class": no base,
    :func:`_plain`, so it is no kind of dict or list), or a value kind ("dict",
    "list", "set", "tuple", "string", "number", "bool") when every binding is a literal or display of it; and
    the functions that never hand back a value (every ``def`` of the name: no ``return`` of a value but None,
    no ``yield``); what each function hands back (:func:`handed_back`, over every ``def`` of the name) and what
    any ``return``, ``yield`` or lambda of the code does; the names bound to what a call of its own function
    or class hands back (``gen = squares_gen(4)``); and the kind of what each function returns where every
    ``return`` of a value in it makes one kind (a plain ``def``, no ``yield``, no ``async``), and of what each
    builtin of :data:`_BUILTIN_KINDS` makes that the code calls and never binds (``set`` makes a "set")."""

    looped: frozenset[str]
    called: frozenset[str]
    callable: frozenset[str]
    kinds: dict[str, str]
    valueless: frozenset[str]
    returns_of: dict[str, frozenset[str]]
    returned: frozenset[str]
    received: frozenset[str]
    return_kinds: dict[str, str]


@lru_cache(maxsize=CACHED_PASTES)
def name_roles(code: str) -> NameRoles | None:
    """The :class:`NameRoles` of the code, or None when it does not parse (shared between calls: read it, never
    change it)."""
    tree = parse(code)
    if tree is None:
        return None
    own = {node.name for node in ast.walk(tree) if isinstance(node, DEFINITION_NODES)}
    looped, called, callable_ = set(), set(), set(own)
    hands_back: dict[str, bool] = {}  # per function name: does any def of it hand back a value
    returns_of: dict[str, frozenset[str]] = {}  # per function name: the words of what its defs hand back
    lambdas: set[str] = set()
    received: set[str] = set()  # bound to what a call of the code's own hands back: "`f` hands back `gen`"
    made = _Makers(tree)
    kinds = _kinds(tree, made)
    kinds_returned: dict[str, set[str | None]] = {}  # per def name: the kinds its defs return (None: unknown)
    for node in ast.walk(tree):
        if isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
            looped |= _names_in(node.target) | _names_in(node.iter)
        elif isinstance(node, ast.Call):
            called.add(function := _last_name(node.func))
            if function not in own:
                arguments = (*node.args, *(keyword.value for keyword in node.keywords))
                callable_ |= {name for argument in arguments if (name := _last_name(argument))}
        elif isinstance(node, DEFINITION_NODES):
            callable_ |= set().union(*(_names_in(decorator) for decorator in node.decorator_list))
            kinds_returned.setdefault(node.name, set()).update(_kinds_returned(node, made, kinds))
            if not isinstance(node, ast.ClassDef):
                hands_back[node.name] = hands_back.get(node.name, False) or _hands_back(node)
                returns_of[node.name] = returns_of.get(node.name, frozenset()) | handed_back(node)
        elif isinstance(node, ast.Lambda):
            lambdas |= _words_in(node.body)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            callable_ |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Lambda):
            callable_ |= set().union(*(_names_in(target) for target in node.targets))
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and _calls_own(node.value, own):
            received |= set().union(*map(_names_in, node.targets if isinstance(node, ast.Assign) else [node.target]))
    valueless = frozenset(name for name, value in hands_back.items() if not value)
    returned = frozenset(lambdas).union(*returns_of.values())
    return_kinds = {**made.called, **{name: found.pop() for name, found in kinds_returned.items()
                                      if len(found) == 1 and None not in found}}
    return NameRoles(frozenset(looped), frozenset(called - {""}), frozenset(callable_), kinds, valueless,
                     returns_of, returned, frozenset(received), return_kinds)


def _kinds_returned(definition: ast.AST, made: "_Makers", kinds: dict[str, str]) -> set[str | None]:
    """The kinds of what a ``def`` returns: each ``return`` of a value in it, as :meth:`_Makers.kind` reads it or a
    name's of ``kinds``; {None} (unknown) for a generator, a coroutine, a class or a def with no value returned.
    A name is given a return kind only when all its defs agree on one (:func:`name_roles`); ``return None`` is not
    a value."""
    returned = {made.kind(child.value) or (kinds.get(child.value.id) if isinstance(child.value, ast.Name) else None)
                for child in _own_nodes(definition) if isinstance(child, ast.Return) and child.value is not None
                and not (isinstance(child.value, ast.Constant) and child.value.value is None)}
    plain = isinstance(definition, ast.FunctionDef) and not yields(definition) and returned
    return returned if plain else {None}


def _calls_own(value: ast.expr | None, own: set[str]) -> bool:
    """True if ``value`` is a call (maybe awaited) of a function or class the code defines."""
    value = value.value if isinstance(value, ast.Await) else value
    return isinstance(value, ast.Call) and _last_name(value.func) in own


def handed_back(function: ast.FunctionDef | ast.AsyncFunctionDef) -> frozenset[str]:
    """The words of what the function's own body hands back: every name, attribute name and word of a string in
    its ``return`` and ``yield`` values and its return annotation, and in what is assigned to a name it hands back
    (``result = a / b`` then ``return result`` hands back ``a`` and ``b`` too)."""
    words = _words_in(function.returns) if function.returns else set()
    sources: dict[str, set[str]] = {}  # each name the function assigns: the words of what it assigns to it
    for node in _own_nodes(function):
        if isinstance(node, (ast.Return, ast.Yield, ast.YieldFrom)) and node.value is not None:
            words |= _words_in(node.value)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.NamedExpr)) and node.value is not None:
            value = _words_in(node.value)
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                for name in _names_in(target):
                    sources.setdefault(name, set()).update(value)
    stack = list(words)
    while stack:  # each word is pushed once: linear in the function's size
        for word in sources.get(stack.pop(), ()):
            if word not in words:
                words.add(word)
                stack.append(word)
    return frozenset(words)


def _words_in(node: ast.AST) -> set[str]:
    """Every name, attribute name and word of a string constant inside ``node``."""
    strings = (child.value for child in ast.walk(node) if isinstance(child, ast.Constant)
               and isinstance(child.value, str))
    return _names_in(node) | {word for string in strings for word in re.findall(r"\w+", string)}


def _hands_back(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """True if the function yields, or its own body returns a value other than None."""
    return yields(function) or any(
        isinstance(node, ast.Return) and node.value is not None
        and not (isinstance(node.value, ast.Constant) and node.value.value is None) for node in _own_nodes(function))


_VALUE_KINDS = {ast.Dict: "dict", ast.DictComp: "dict", ast.List: "list", ast.ListComp: "list", ast.Set: "set",
                ast.SetComp: "set", ast.Tuple: "tuple", ast.JoinedStr: "string"}
_CONSTANT_KINDS = {bool: "bool", int: "number", float: "number", complex: "number", str: "string"}


def _kinds(tree: ast.Module, made: "_Makers") -> dict[str, str]:
    """Each name bound only as one kind of thing (see :class:`NameRoles`); a name bound any other way (a
    call's result but a builtin's or a plain class's, a loop, a parameter but as :func:`_argument_kinds` reads
    it) has no kind here."""
    bound: dict[str, set[str | None]] = {}
    passed = _argument_kinds(tree, made)
    for node in ast.walk(tree):
        if isinstance(node, DEFINITION_NODES):
            kind = ("plain class" if _plain(node) else "class") if isinstance(node, ast.ClassDef) else "function"
            bound.setdefault(node.name, set()).add(kind)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            kind = made.kind(node.value)
            for target in targets:
                for name in _names_in(target) if not isinstance(target, (ast.Name, ast.Attribute)) else ():
                    bound.setdefault(name, set()).add(None)  # unpacked: a part of the value, kind unknown
                if isinstance(target, (ast.Name, ast.Attribute)):
                    bound.setdefault(_last_name(target), set()).add(kind)
        elif isinstance(node, ast.arg):
            bound.setdefault(node.arg, set()).add(passed.get(id(node)))
        else:
            for name in bound_otherwise(node):
                bound.setdefault(name, set()).add(None)
    return {name: kinds.pop() for name, kinds in bound.items() if len(kinds) == 1 and None not in kinds}


def _argument_kinds(tree: ast.Module, made: "_Makers") -> dict[int, str | None]:
    """The kind each parameter of a module-level function is given by the code's own calls of it (by the id of
    its ``ast.arg``): ``merge({'x': 1}, {'y': 2})`` makes ``merge``'s ``a`` and ``b`` dicts. Only where the code
    does nothing else with the name (a function once defined, undecorated, only ever called, never passed or
    rebound) and every call gives the parameter, by place, keyword or default, a value of one kind
    (:meth:`_Makers.kind`); else it has none."""
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)
                 and not node.decorator_list and not node.args.vararg and not node.args.kwarg}
    defined: dict[str, int] = {}
    calls: dict[str, list[ast.Call]] = {}
    callees: set[int] = set()
    names: list[ast.Name] = []
    for node in ast.walk(tree):
        if isinstance(node, DEFINITION_NODES):
            defined[node.name] = defined.get(node.name, 0) + 1
        elif isinstance(node, ast.Call):
            callees.add(id(node.func))
            if isinstance(node.func, ast.Name):
                calls.setdefault(node.func.id, []).append(node)
        elif isinstance(node, ast.Name):
            names.append(node)
    otherwise = {node.id for node in names if id(node) not in callees}  # a call's own name is seen after it
    found: dict[int, str | None] = {}
    for name, function in functions.items():
        if defined[name] > 1 or name in otherwise or name not in calls:
            continue
        params = [*function.args.posonlyargs, *function.args.args]
        defaults = dict(zip(params[len(params) - len(function.args.defaults):], function.args.defaults))
        for place, param in enumerate(params):
            given = {_given(call, place, param, defaults.get(param), made) for call in calls[name]}
            found[id(param)] = given.pop() if len(given) == 1 else None
    return found


def _given(call: ast.Call, place: int, param: ast.arg, default: ast.expr | None, made: "_Makers") -> str | None:
    """The kind of value ``call`` gives the parameter at ``place``: its argument there, its keyword or the
    default; None for a call that unpacks (``*args``, ``**kw``) or a value of no known kind."""
    if any(isinstance(arg, ast.Starred) for arg in call.args) or any(k.arg is None for k in call.keywords):
        return None
    keyword = next((k.value for k in call.keywords if k.arg == param.arg), None)
    return made.kind(call.args[place] if place < len(call.args) else keyword or default)


# What a call of a builtin makes, where the code does not bind the name itself.
_BUILTIN_KINDS = {"dict": "dict", "list": "list", "sorted": "list", "set": "set", "frozenset": "set",
                  "tuple": "tuple", "str": "string", "repr": "string", "chr": "string", "len": "number",
                  "int": "number", "float": "number", "ord": "number", "round": "number", "bool": "bool",
                  "isinstance": "bool", "callable": "bool", "hasattr": "bool"}


class _Makers:
    """What makes a value of a known kind in this code: the builtins of :data:`_BUILTIN_KINDS` it never binds
    itself, and its plain classes (no base, no metaclass, no ``__call__``), whose instances are "object"s: no
    noun of a value kind, a function's or a class's fits one."""

    def __init__(self, tree: ast.Module):
        names = bound_names(tree)
        plain: set[str] = set()
        bare: set[str] = set()  # names called as themselves, not as a method: ``set(x)``, not ``cache.set(x)``
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                bare.add(node.func.id)
            elif isinstance(node, ast.ClassDef) and _plain(node):
                plain.add(node.name)
        self.builtins = {name: kind for name, kind in _BUILTIN_KINDS.items() if name not in names}
        self.called = {name: kind for name, kind in self.builtins.items() if name in bare}  # what they return
        self.plain = frozenset(plain)

    def kind(self, value: ast.expr | None) -> str | None:
        """The kind of value a literal, display, comparison, ``not``, builtin call or plain class makes, else
        None."""
        if isinstance(value, ast.Compare) or (isinstance(value, ast.UnaryOp) and isinstance(value.op, ast.Not)):
            return "bool"
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name):
            return "object" if value.func.id in self.plain else self.builtins.get(value.func.id)
        return _value_kind(value)


def _plain(node: ast.ClassDef) -> bool:
    """A class with no base but ``object``, no keywords (metaclass) and no ``__call__`` of its own."""
    return (all(isinstance(base, ast.Name) and base.id == "object" for base in node.bases) and not node.keywords
            and not any(isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) and child.name == "__call__"
                        for child in node.body))


def bound_names(tree: ast.AST) -> set[str]:
    """Every name the code binds: defined, assigned, or bound any way :func:`bound_otherwise` lists."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, DEFINITION_NODES):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        else:
            names |= bound_otherwise(node)
    return names


def bound_otherwise(node: ast.AST) -> set[str]:
    """The names ``node`` binds other than by ``def``, ``class`` or assignment: loop and ``with`` targets,
    parameters, imports, ``:=``, ``except ... as``, ``global``, ``nonlocal``, ``del``."""
    if isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension, ast.NamedExpr)):
        return _names_in(node.target)
    if isinstance(node, ast.withitem):
        return _names_in(node.optional_vars) if node.optional_vars is not None else set()
    if isinstance(node, ast.arg):
        return {node.arg}
    if isinstance(node, ast.alias):
        return {(node.asname or node.name).split(".")[0]}
    if isinstance(node, ast.ExceptHandler):
        return {node.name} if node.name else set()
    if isinstance(node, (ast.Global, ast.Nonlocal)):
        return set(node.names)
    if isinstance(node, ast.Delete):
        return set().union(*(_names_in(target) for target in node.targets))
    return set()


def _value_kind(value: ast.expr | None) -> str | None:
    """The kind of value a literal or display makes, else None."""
    if isinstance(value, ast.Constant):
        return _CONSTANT_KINDS.get(type(value.value))
    return _VALUE_KINDS.get(type(value))


def _names_in(node: ast.AST) -> set[str]:
    """Every name and attribute name inside ``node``."""
    return {found for child in ast.walk(node) if (found := _last_name(child))}


_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
_LOOPS = (ast.For, ast.AsyncFor, ast.While, *_COMPREHENSIONS)


def nests_loops(tree: ast.AST, loops: tuple[type, ...] = _LOOPS) -> bool:
    """Whether a loop or comprehension runs inside another (or a comprehension has several ``for``): one pass,
    each node visited once with whether a loop encloses it. ``loops``: the kinds of node that count (only
    comprehensions, for "a nested comprehension")."""
    stack = [(tree, False)]
    while stack:
        node, inside = stack.pop()
        looping = isinstance(node, loops)
        if looping and (inside or len(getattr(node, "generators", ())) > 1):
            return True
        stack.extend((child, inside or looping) for child in ast.iter_child_nodes(node))
    return False


_REPEATED = (*_LOOPS, ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


def prints_several(tree: ast.AST) -> bool:
    """Whether the code may print more than one thing: two ``print`` calls or more, one inside a loop,
    comprehension, ``def`` or lambda, or one of several values (or ``*values``); one pass, as :func:`nests_loops`."""
    stack, seen = [(tree, False)], 0
    while stack:
        node, inside = stack.pop()
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
            seen += 1
            if inside or seen > 1 or len(node.args) > 1 or any(isinstance(a, ast.Starred) for a in node.args):
                return True
        stack.extend((child, inside or isinstance(node, _REPEATED)) for child in ast.iter_child_nodes(node))
    return False


def _features(tree: ast.Module) -> frozenset[str]:
    found: set[str] = set()
    if nests_loops(tree):
        found.add("nested loop")
    if nests_loops(tree, _COMPREHENSIONS):
        found.add("nested comprehension")
    if prints_several(tree):
        found.add("several prints")
    if _is_short(tree.body):
        found.add("one-liner")
    for node in ast.walk(tree):
        feature = _NODE_FEATURES.get(type(node))
        if feature:
            found.add(feature)
        if isinstance(node, _ONE_LINE_EXPRESSIONS):
            found.add("one-liner")
        if isinstance(node, ast.AsyncFor):
            found.add("loop")
        if isinstance(node, ast.AsyncWith):
            found.add("with")
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            if node.args.defaults or any(node.args.kw_defaults):
                found.add("default parameter")
            if _mutable_default(node.args):
                found.add("mutable default")
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found.add("function")
            if _is_short(_without_docstring(node), lines=1):
                found.add("one-liner")
            if recurses(node):
                found.add("recursion")
            if yields(node):
                found.add("generator")
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.decorator_list:
            found.add("decorator")
            for decorator in node.decorator_list:
                target = decorator.func if isinstance(decorator, ast.Call) else decorator
                if _last_name(target) == "dataclass":
                    found.add("dataclass")
        if isinstance(node, ast.Return) and node.value is not None:
            found.add("return")
        if isinstance(node, ast.Call):
            found |= call_features(node)
    return frozenset(found)


_ONE_LINE_EXPRESSIONS = (ast.Lambda, ast.IfExp, ast.ListComp, ast.DictComp, ast.SetComp, ast.GeneratorExp)
_MUTABLE_DISPLAYS = (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)
_MUTABLE_CALLS = frozenset({"list", "dict", "set", "defaultdict", "OrderedDict", "Counter", "deque", "bytearray"})


def _mutable_default(arguments: ast.arguments) -> bool:
    """True if a parameter defaults to a list, dict or set: a display, a comprehension or a call making one."""
    return any(isinstance(default, _MUTABLE_DISPLAYS) or (
        isinstance(default, ast.Call) and _last_name(default.func) in _MUTABLE_CALLS)
        for default in (*arguments.defaults, *arguments.kw_defaults) if default is not None)


def _is_short(body: list[ast.stmt], lines: int = 3) -> bool:
    """True if the statements span at most ``lines`` lines ("a one-liner" may fairly say so of them)."""
    return bool(body) and body[-1].end_lineno - body[0].lineno < lines


def _without_docstring(function: ast.FunctionDef | ast.AsyncFunctionDef) -> list[ast.stmt]:
    """A function's statements after its docstring, if it has one and more."""
    body = function.body
    return body[1:] if len(body) > 1 and ast.get_docstring(function, clean=False) is not None else body


def _last_name(node: ast.expr) -> str:
    """``dataclass`` for ``dataclass`` and ``dataclasses.dataclass`` (no unparse: it recurses)."""
    return node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""


def call_features(node: ast.Call) -> set[str]:
    """The :data:`FEATURES` one call has: print, sort, file read/write, network."""
    found = set()
    name = call_name(node)
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
    elif last in ("write_text", "write_bytes", "to_csv", "to_json", "savefig", "savetxt") or name in _PATH_SAVES:
        found.add("file write")
    if name.split(".")[0] in _NETWORK_MODULES or name.startswith(("urllib.request", "http.client")):
        found.add("network")
    return found


# --- The facts sheet -------------------------------------------------------------------------------------------

#: The sheet's bound, in characters and in tokens as :func:`_cost` counts them; a longer sheet becomes an
#: outline, then is cut with "… N more definitions".
FACTS_MAX_CHARS = 1200
FACTS_MAX_TOKENS = 300
#: An ASCII word, a digit, any other character: roughly one token each in Gemma's and Qwen's vocabularies on
#: this kind of text (digits are split one by one; measured 0.95 of the real count on average, 1.17 at most,
#: on data/train.json), so short punctuated lines are not undercounted as characters would be.
_PIECE = re.compile(r"[A-Za-z]+|\S")
#: Pastes longer than this get the outline straight away (definitions and their one-line facts).
OUTLINE_LINES = 60
_LINE_CHARS = 240      # one fact line, so one long definition cannot take the whole sheet
_EXPR_CHARS = 40       # one abbreviated expression
_UNPARSE_NODES = 300   # ast.unparse recurses: only trees this small and ...
_UNPARSE_DEPTH = 40    # ... this shallow are unparsed; bigger ones get a label ("[…]")
_MAX_LISTED = 3        # returns, prints, loops listed per scope before "…"

#: The nodes that define a name of their own: ``def``, ``async def``, ``class``.
DEFINITION_NODES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_SCOPES = (*DEFINITION_NODES, ast.Lambda)
#: What the model most often claims wrongly, listed when the code has none of it: (features, words).
_ABSENT = (
    (("recursion",), "recursion"), (("generator",), "yield"), (("async",), "async/await"),
    (("print",), "print"), (("file read", "file write"), "files"), (("network",), "network"),
    (("raise", "try"), "exceptions"),
)
_LABELS = {ast.List: "[…]", ast.Tuple: "(…)", ast.Dict: "{…}", ast.Set: "{…}", ast.ListComp: "[… for …]",
           ast.SetComp: "{… for …}", ast.DictComp: "{… for …}", ast.GeneratorExp: "(… for …)",
           ast.JoinedStr: "f'…'", ast.Lambda: "lambda: …"}


def _small(node: ast.AST) -> bool:
    """Whether ``node`` is small and shallow enough for ast.unparse (counted iteratively, stops early)."""
    stack, seen = [(node, 0)], 0
    while stack:
        current, depth = stack.pop()
        seen += 1
        if seen > _UNPARSE_NODES or depth > _UNPARSE_DEPTH:
            return False
        stack.extend((child, depth + 1) for child in islice(ast.iter_child_nodes(current), _UNPARSE_NODES))
    return True


def _clean(text: str) -> str:
    """One line, and never a section marker: ``###`` in copied text would read as the end of the sheet."""
    text = " ".join(text.split())
    while "###" in text:
        text = text.replace("###", "##")
    return text


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def _short(node: ast.AST | None, limit: int = _EXPR_CHARS) -> str:
    """The expression as source, abbreviated; a label such as ``[…]`` for one too big to unparse safely."""
    if node is None:
        return ""
    if not _small(node):
        if isinstance(node, ast.Call):
            return _cut(f"{call_name(node) or '…'}(…)", limit)
        return _LABELS.get(type(node), "…")
    try:
        return _cut(_clean(ast.unparse(node)), limit)
    except (RecursionError, ValueError):
        return "…"


def _printed(node: ast.expr) -> str:
    """One print argument: a literal as written (``'Done'``, an f-string "Total: {t}"), else the expression."""
    if isinstance(node, ast.JoinedStr):
        text = _short(node, _EXPR_CHARS + 4)
        for opening in ('f"""', "f'''", 'f"', "f'"):
            if text.startswith(opening):  # an abbreviated one has lost its closing quote
                text = text[len(opening):].removesuffix(opening[1:])
                break
        return f'an f-string "{text}"'
    return _short(node)


def _print_fact(node: ast.Call) -> str:
    """``prints 'Done'``, ``prints an empty line``, ``prints x, 'y' (end='')``."""
    parts = [_printed(arg) for arg in node.args]
    keywords = ", ".join(f"{k.arg}={_short(k.value, 20)}" if k.arg else f"**{_short(k.value, 20)}"
                         for k in node.keywords)
    text = "prints " + (", ".join(parts) if parts else "an empty line")
    return f"{text} ({keywords})" if keywords else text


def _io_fact(node: ast.Call) -> str | None:
    """What one call does to the outside world, or None (print is listed separately)."""
    features = call_features(node)
    if call_name(node) == "input":
        return "reads input()"
    words = [word for feature, word in (("file read", "reads a file"), ("file write", "writes a file"),
                                        ("network", "network calls")) if feature in features]
    return ", ".join(words) or None


def _exception_name(node: ast.expr | None) -> str:
    if node is None:
        return "everything (bare except)"
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Tuple):
        return ", ".join(_short(e, 24) for e in node.elts)
    return _short(node, 24)


def _body(scope: ast.AST):
    """The nodes of a scope's own body in source order, not entering nested definitions or lambdas."""
    return (node for node, _ in _guarded_body(scope))


def _guarded_body(scope: ast.AST):
    """``(node, when)`` for the nodes of a scope's own body in source order, not entering nested definitions or
    lambdas: ``when`` is the innermost condition the node runs under (``if i % 3 == 0``, ``otherwise`` for an else
    branch, ``on ValueError`` in an except handler), or ""."""
    stack = [(child, "") for child in reversed(list(ast.iter_child_nodes(scope)))]
    while stack:
        node, when = stack.pop()
        yield node, when
        if isinstance(node, _SCOPES):
            continue
        if isinstance(node, ast.If):
            guarded = [(node.test, when)] + [(child, f"if {_short(node.test)}") for child in node.body]
            # an elif is an If alone in the else branch: its own test says when it runs
            otherwise = "" if len(node.orelse) == 1 and isinstance(node.orelse[0], ast.If) else "otherwise"
            guarded += [(child, otherwise or when) for child in node.orelse]
        elif isinstance(node, ast.ExceptHandler):
            names = _exception_name(node.type).replace(", ", " or ") if node.type is not None else "any exception"
            caught = f"on {names}"
            guarded = [(node.type, when)] * (node.type is not None) + [(child, caught) for child in node.body]
        else:
            guarded = [(child, when) for child in ast.iter_child_nodes(node)]
        stack.extend(reversed(guarded))


def _when(text: str, when: str) -> str:
    return f"{text} {when}" if when else text


def _listed(items: list[str], limit: int = _MAX_LISTED, sep: str = ", ") -> str:
    """Distinct items in order, the first ``limit`` of them and "…" for the rest."""
    items = list(dict.fromkeys(items))
    return sep.join(items[:limit] + (["…"] if len(items) > limit else []))


class _Scope:
    """What one scope's own body does (a function's, or the module's top level)."""

    def __init__(self, scope: ast.AST, conditions: bool = True):
        self.conditions = conditions  # prompt format 2: each fact with its condition, each loop with its variable
        self.loops, self.raises, self.catches, self.returns, self.prints, self.io = [], [], [], [], [], []
        self.imports, self.sets, self.calls, self.asserts, self.whiles, self.yielded = [], [], [], [], [], []
        self.call_texts = []  # a plain name's call with its arguments (``fizzbuzz(15)``), else the callee
        for node, when in _guarded_body(scope):
            self._read(node, when if conditions else "")

    def _read(self, node: ast.AST, when: str) -> None:
        if isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
            over = f"{_short(node.target, 24)} over " if self.conditions else ""  # format 1: "loops over a, b"
            self.loops.append(f"{over}{_short(node.iter)}")
        elif isinstance(node, ast.While):
            self.whiles.append(_short(node.test))
        elif isinstance(node, ast.Yield):
            self.yielded.append(_short(node.value) if node.value else "None")
        elif isinstance(node, ast.YieldFrom):
            self.yielded.append(f"from {_short(node.value)}")
        elif isinstance(node, ast.Raise):
            self.raises.append(_when(_exception_name(node.exc) if node.exc else "re-raises", when))
        elif isinstance(node, ast.ExceptHandler):
            self.catches.append(_exception_name(node.type))
        elif isinstance(node, ast.Return) and node.value is not None:
            self.returns.append(_when(_short(node.value), when))
        elif isinstance(node, ast.Import):
            self.imports += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            self.imports += [f"{node.module or '.'}.{alias.name}" for alias in node.names]
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            self.sets += [_short(t, 24) for t in targets]
        elif isinstance(node, ast.Assert):
            self.asserts.append(_short(node.test))
        elif isinstance(node, ast.Call):
            self.calls.append(_callee(node))
            plain = isinstance(node.func, ast.Name) and self.conditions
            self.call_texts.append(_short(node, 30) if plain else _callee(node))
            if call_name(node) == "print":
                self.prints.append(_when(_print_fact(node), when))
            elif io := _io_fact(node):
                self.io.append(io)

    def facts(self) -> list[str]:
        """The function's facts, in reading order."""
        facts = []
        if self.loops:
            facts.append(f"loops {'' if self.conditions else 'over '}{_listed(self.loops)}")
        if self.whiles:
            facts.append(f"loops while {_listed(self.whiles, sep=' / ')}")
        if self.raises:
            facts.append(f"raises {_listed(self.raises)}")
        if self.catches:
            facts.append(f"catches {_listed(self.catches)}")
        if self.asserts:
            facts.append(f"asserts {_listed(self.asserts, 2)}")
        facts += self._output()
        return facts

    def _output(self) -> list[str]:
        prints = list(dict.fromkeys(self.prints))
        if len(prints) > _MAX_LISTED + 1:  # "1 more print" would be no shorter than the print itself
            prints = prints[:_MAX_LISTED] + [f"{len(prints) - _MAX_LISTED} more prints"]
        return prints + list(dict.fromkeys(self.io))


def _callee(node: ast.Call) -> str:
    """``print``, ``json.dumps``, ``' '.join``: the called expression, abbreviated."""
    func = node.func
    while isinstance(func, ast.Attribute):
        func = func.value
    return call_name(node) if isinstance(func, ast.Name) else _short(node.func, 24)


def _signature(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    """``name(a, b: int = 0, *args, key=None, **kw) -> str``, abbreviated."""
    args = node.args
    positional = args.posonlyargs + args.args
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    params = []
    for i, (arg, default) in enumerate(zip(positional, defaults)):
        params.append(_param(arg, default))
        if args.posonlyargs and i == len(args.posonlyargs) - 1:
            params.append("/")
    if args.vararg:
        params.append("*" + _param(args.vararg, None))
    elif args.kwonlyargs:
        params.append("*")
    params += [_param(arg, default) for arg, default in zip(args.kwonlyargs, args.kw_defaults)]
    if args.kwarg:
        params.append("**" + _param(args.kwarg, None))
    returns = f" -> {_short(node.returns, 24)}" if node.returns else ""
    return f"{node.name}({', '.join(params)}){returns}"


def _param(arg: ast.arg, default: ast.expr | None) -> str:
    text = arg.arg + (f": {_short(arg.annotation, 24)}" if arg.annotation else "")
    if default is not None:
        text += f" = {_short(default, 20)}" if arg.annotation else f"={_short(default, 20)}"
    return text


def _decorators(node: ast.AST) -> str:
    return "".join(f"@{_short(d, 40)} " for d in node.decorator_list)


def _function_line(node: ast.FunctionDef | ast.AsyncFunctionDef, outline: bool, defined: frozenset[str],
                   conditions: bool = True) -> str:
    """``@cache def fib(n): recurses; returns …`` — one line of facts for one function."""
    kind = "async def" if isinstance(node, ast.AsyncFunctionDef) else "def"
    head = f"{_decorators(node)}{kind} {_signature(node)}"
    scope = _Scope(node, conditions)
    facts = []
    if recurses(node):
        facts.append("recurses")
    generator = yields(node)
    if generator:
        facts.append(f"a generator: yields {_listed(scope.yielded)}" if not outline else "a generator")
    if any(isinstance(n, (ast.Await, ast.AsyncFor, ast.AsyncWith)) for n in _body(node)):
        facts.append("awaits")
    # calls to the code's own functions and classes: how the pieces connect (other calls are too many to list)
    local = [name for name in scope.calls if name.rsplit(".", 1)[-1] in defined - {node.name}]
    if local:
        facts.append(f"calls {_listed(local, 4)}")
    facts += scope.facts() if not outline else [f for f in scope.facts() if not f.startswith("loops")]
    attributes = [name for name in scope.sets if name.startswith(("self.", "cls."))]
    if attributes and not outline:
        facts.append(f"sets {_listed(attributes, 4)}")
    if _is_stub(node):
        facts.append("empty body (a stub)")
    elif scope.returns and not outline:
        facts.append(f"returns {_listed(scope.returns, sep=' or ')}")
    elif not outline and not generator:  # a generator hands back what it yields
        facts.append("returns nothing")
    return f"{head}: {'; '.join(facts)}" if facts else head


def _is_stub(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A body of only ``pass``, ``...`` or a docstring (a protocol or abstract method)."""
    return all(isinstance(s, ast.Pass) or (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
               for s in node.body)


def _class_line(node: ast.ClassDef) -> str:
    """``@dataclass class Point(Base): fields x: int, y`` — the class, its bases and its attributes."""
    bases = [_short(b, 24) for b in node.bases] + [f"{k.arg}={_short(k.value, 24)}" for k in node.keywords]
    head = f"{_decorators(node)}class {node.name}" + (f"({', '.join(bases)})" if bases else "")
    fields = []
    for statement in node.body:
        if isinstance(statement, ast.AnnAssign):
            default = f" = {_short(statement.value, 20)}" if statement.value else ""
            fields.append(_short(statement.target, 24) + f": {_short(statement.annotation, 24)}{default}")
        elif isinstance(statement, ast.Assign):
            fields += [_short(t, 24) for t in statement.targets]
    return f"{head}: attributes {_listed(fields, 6)}" if fields else head


def _definition_lines(tree: ast.Module, outline: bool, conditions: bool = True) -> list[str]:
    """One line per def/class, nested ones indented under their parent (methods under their class)."""
    defined = frozenset(node.name for node in ast.walk(tree) if isinstance(node, DEFINITION_NODES))
    lines = []
    stack = [(node, 0) for node in reversed(tree.body)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, DEFINITION_NODES):
            text = (_class_line(node) if isinstance(node, ast.ClassDef)
                    else _function_line(node, outline, defined, conditions))
            lines.append("  " * min(depth, 4) + "- " + _cut(text, _LINE_CHARS))
            depth += 1
            children = [child for child in _body(node) if isinstance(child, DEFINITION_NODES)]
        else:  # a def inside an if/try at the top level: look inside
            children = [child for child in ast.iter_child_nodes(node) if isinstance(child, ast.stmt)]
        stack.extend((child, depth) for child in reversed(children))
    return lines


def _top_level_line(tree: ast.Module, conditions: bool = True) -> str:
    """What runs when the file runs: imports, assignments, calls, loops, prints (with literal text)."""
    scope = _Scope(tree, conditions)
    facts = []
    if scope.imports:
        facts.append(f"imports {_listed(scope.imports, 6)}")
    if scope.sets:
        facts.append(f"sets {_listed(scope.sets, 6)}")
    if scope.calls:  # print is listed with what it prints
        defined = {node.name for node in ast.walk(tree) if isinstance(node, DEFINITION_NODES)}  # their arguments matter
        called = [text if name in defined else name for name, text in zip(scope.calls, scope.call_texts)
                  if name != "print"]
        facts += [f"calls {_listed(called, 6)}"] if called else []
    else:
        facts.append("calls nothing (nothing runs)")
    facts += scope.facts()
    return "- top level: " + _cut("; ".join(facts), _LINE_CHARS)


def _absent_line(tree: ast.Module) -> str | None:
    """The often-misclaimed constructs the code does not have."""
    features = _features(tree)
    missing = [word for names, word in _ABSENT if not features & set(names)]
    return f"- not in the code: {', '.join(missing)}" if missing else None


def _cost(text: str) -> int:
    """The sheet's length in estimated tokens (see _PIECE), newlines included."""
    return len(_PIECE.findall(text)) + text.count("\n")


def _within(text: str) -> bool:
    return len(text) <= FACTS_MAX_CHARS and _cost(text) <= FACTS_MAX_TOKENS


def _fit(lines: list[str], tail: list[str]) -> str:
    """``lines`` then ``tail`` within the bound; lines that do not fit become "… N more" (linear time)."""
    text = "\n".join(lines + tail)
    if _within(text):
        return text
    fixed = "\n".join([f"- … {len(lines)} more definitions"] + tail)
    chars, tokens, keep = FACTS_MAX_CHARS - len(fixed), FACTS_MAX_TOKENS - _cost(fixed), 0
    while keep < len(lines):
        chars -= len(lines[keep]) + 1
        tokens -= _cost(lines[keep]) + 1
        if chars < 0 or tokens < 0:
            break
        keep += 1
    return _cut("\n".join(lines[:keep] + [f"- … {len(lines) - keep} more definitions"] + tail), FACTS_MAX_CHARS)


@lru_cache(maxsize=CACHED_PASTES)  # the worker renders a prompt twice per request: to check its length, then to run it
def facts_sheet(code: str, conditions: bool = True) -> str:
    """Facts about ``code`` read from its syntax tree, one per line, within FACTS_MAX_CHARS and FACTS_MAX_TOKENS
    (deterministic: the same code always gets the same sheet); a pasted run's code (:func:`parse`) also gets the
    exception its traceback ends in, and a paste in another language its name (:mod:`mafioso.prompts.language`).
    ``conditions=False`` writes prompt format 1's sheet: no conditions, no loop variables, no arguments of
    top-level calls, no language."""
    tree, why = _parse(code)
    if tree is None:
        language = other_language(code) if conditions else None  # format 1's sheet said nothing of it
        return f"- not parseable as Python ({why})" + (f"; it reads as {language}" if language else "")
    record = run_record(code)
    ran = [f"- pasted with its run, whose traceback ends in {record[1]}"] if record and record[1] else []
    absent = ran + [line for line in [_absent_line(tree)] if line]
    if code.count("\n") < OUTLINE_LINES:
        full = _definition_lines(tree, False, conditions) + [_top_level_line(tree, conditions)] + absent
        text = "\n".join(full)
        if _within(text):
            return text
    return _fit(_definition_lines(tree, True, conditions), [_top_level_line(tree, conditions)] + absent)
