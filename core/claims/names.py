"""Invented names: a name the answer presents as the code's that appears nowhere in it."""

from __future__ import annotations

import builtins
import collections.abc
import contextlib
import functools
import importlib
import keyword
import re
import sys
import warnings

from mafioso.core.claims.text import FENCE, SPAN, advice_from, blank, negated, quoted, sentences, within

__all__ = ["EXCEPTIONS", "code_tokens", "imported_modules", "invented_names", "library_types", "module_types"]

_STRING = re.compile(r"""[rRbBfFuU]{0,2}(?:"[^"\n]*"|'[^'\n]*')""")
_NAME = re.compile(r"(?<![\w])[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*")
_PROSE_CALL = re.compile(r"(?<![\w.`])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\((?!s\)|es\))")
_PROSE_DOTTED = re.compile(r"(?<![\w.`/@])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)(?![\w(`])")
_PROSE_CALLED = re.compile(r"\b(?:function|method|class|variable|attribute|parameter|argument|constant)\s+"
                           r"named\s+[\"']?([A-Za-z_]\w*)")
_PROSE_THE_X = re.compile(r"\bthe\s+([A-Za-z_]\w*)\s+(?:function|method|class|variable)\b")
_CODE_LIKE = re.compile(r"_|\d|[a-z][A-Z]")  # snake_case, digits or camelCase: a name, not an English word
_FILE_NAME = re.compile(r"\.(?:txt|csv|tsv|json|jsonl|log|py|md|db|sqlite|html?|xml|ya?ml|ini|cfg|toml|png|"
                        r"jpe?g|gif|pdf|zip|gz|tar|tmp|bak|dat|conf|sql|xlsx?|docx?|mp3|mp4|wav)$", re.IGNORECASE)
_ABBREVIATIONS = frozenset({"e.g", "i.e", "etc", "vs", "a.k.a", "p.s"})
# Names that describe a value rather than point into the code: types ("a `tuple`") and exceptions
# ("raises a `KeyError`"). Builtin functions (len, enumerate, sorted) are not here: a backticked `len` the
# code never calls is an invented name.
#: The builtin exceptions (``ZeroDivisionError``): grounded decoding lets a span spell them whatever the code, as
#: it does the classes of the standard modules the code imports (:func:`library_types`)
EXCEPTIONS = frozenset(name for name, value in vars(builtins).items()
                       if isinstance(value, type) and issubclass(value, BaseException))
_TYPE_NAMES = frozenset({"int", "float", "complex", "str", "bytes", "bytearray", "bool", "list", "dict", "tuple",
                         "set", "frozenset", "object", "type", "NoneType", "None", "True", "False"}) | EXCEPTIONS
# `_` is a soft keyword only in a match's wildcard: "the dict's `_` key" of code with no `_` invents a name
_KEYWORDS = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) - {"_"}
#: The special names Python gives a class or module (`__init__`, `__eq__`, `__enter__`, `__post_init__`): those of
#: the builtin types and protocols, and a few only the data model's documentation lists. An answer may name one
#: the code lacks ("define `__eq__`"); a dunder outside them (`__property__`) is an invented name.
_SPECIAL_NAMES = frozenset(
    name for kind in (object, type, int, float, str, bytes, list, dict, set, tuple, range, slice, property,
                      staticmethod, classmethod, BaseException, type(lambda: 0), type(sys), type(_ for _ in ()),
                      contextlib.AbstractContextManager, contextlib.AbstractAsyncContextManager,
                      *(getattr(collections.abc, abc) for abc in collections.abc.__all__))
    for name in dir(kind) if name.startswith("__") and name.endswith("__")
) | frozenset({"__post_init__", "__missing__", "__set_name__", "__get__", "__set__", "__delete__", "__fspath__",
               "__match_args__", "__notes__", "__slots__", "__main__", "__index__", "__round__", "__trunc__",
               "__floor__", "__ceil__", "__file__", "__all__", "__version__", "__wrapped__", "__dataclass_fields__"})


def code_tokens(code: str) -> set[str]:
    """Every word of the code's text (names, attributes, words in its strings and comments)."""
    return set(re.findall(r"\w+", code))


def _plain_imports(code: str) -> set[str]:
    """Modules the code imports as a whole (``import asyncio``): ``asyncio.x`` needs the full text in the code."""
    return {m.group(1) for m in re.finditer(r"^\s*import\s+(\w+)", code, re.MULTILINE)} | {
        m.group(1) for m in re.finditer(r"\bas\s+(\w+)", code)}


def _mentioned(name: str, text: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text) is not None


def _name_in_code(name: str, code: str, tokens: set[str], modules: set[str], printed: str) -> bool:
    """True if the code (or what it printed) supports ``name``."""
    if "." not in name:
        return name in tokens or _mentioned(name, printed)
    if _mentioned(name, code) or _mentioned(name, printed):
        return True
    parts = name.split(".")
    head, last = parts[0], parts[-1]
    if last not in tokens:
        return False
    # `self.members`, `str.join`, `Crew.recruit`: the attribute is the code's even if the prefix is spelled
    # differently; a module imported whole (`asyncio.get`) must match exactly.
    return head in ("self", "cls") or head in _TYPE_NAMES or (head in tokens and head not in modules)



def _presented_names(sentence: str) -> list[tuple[str, int, int]]:
    """Every name the sentence presents as code, with the span of text that presents it."""
    names = []
    for span in SPAN.finditer(sentence):
        content = _STRING.sub(" ", span.group(1))
        names.extend((m.group(0), span.start(), span.end()) for m in _NAME.finditer(content))
    prose = re.sub(r'"[^"\n]{0,200}"', blank, SPAN.sub(blank, sentence))  # same length: offsets hold
    for pattern in (_PROSE_CALL, _PROSE_DOTTED, _PROSE_CALLED, _PROSE_THE_X):
        for m in pattern.finditer(prose):
            name = m.group(1)
            if pattern is _PROSE_DOTTED and (name.lower() in _ABBREVIATIONS or len(name) <= 3
                                             or _FILE_NAME.search(name)):
                continue
            if pattern is _PROSE_THE_X and not _CODE_LIKE.search(name):
                continue
            names.append((name, m.start(), m.end()))
    return names


def _described(name: str, code_has_class: bool, library: set[str]) -> bool:
    """Names that describe rather than point into the code: keywords, types and exceptions (builtin, or of a
    standard module the code imports: a `timedelta`, a `JSONDecodeError`), and the special methods a class
    gets from Python (`__init__` of a dataclass, `__eq__`; not `__property__`)."""
    base = name.split(".")[0]
    if name in _KEYWORDS or base in _KEYWORDS or name in _TYPE_NAMES or name in library:
        return True
    return code_has_class and name in _SPECIAL_NAMES


# Standard modules that do something when imported (print, open a browser) or are slow to import.
_NOISY_MODULES = frozenset({"this", "antigravity", "__hello__", "__phello__", "idlelib", "tkinter", "turtle",
                            "turtledemo", "webbrowser", "ensurepip", "venv", "lib2to3", "pydoc"})


@functools.lru_cache(maxsize=256)
def module_types(module: str) -> frozenset[str]:
    """The classes a standard-library module exports (imported here: standard library only, never dataset
    code)."""
    if module not in sys.stdlib_module_names or module in _NOISY_MODULES:
        return frozenset()
    try:
        with warnings.catch_warnings():  # deprecated modules warn on import; that is not the user's business
            warnings.simplefilter("ignore")
            loaded = importlib.import_module(module)
    except Exception:  # noqa: BLE001 - a module missing or broken on this platform just adds no names
        return frozenset()
    return frozenset(name for name, value in vars(loaded).items() if isinstance(value, type)
                     and not name.startswith("_"))


def imported_modules(code: str) -> set[str]:
    """The top-level modules the code imports (``from a.b import c``: ``a``)."""
    return {m.group(1) for m in re.finditer(r"^\s*(?:from|import)\s+(\w+)", code, re.MULTILINE)}


def library_types(code: str) -> set[str]:
    """Class names of the standard modules the code imports (:func:`module_types`)."""
    return set().union(*map(module_types, imported_modules(code)))


def invented_names(code: str, answer: str, output: str | None = None) -> list[dict]:
    """Names the answer presents as the code's that appear nowhere in it (nor, when known, in its output)."""
    tokens, modules = code_tokens(code), _plain_imports(code)
    printed = output or ""
    has_class = "class" in tokens
    library = library_types(code)
    found: dict[str, dict] = {}
    for sentence in sentences(FENCE.sub(" ", answer)):
        advice = advice_from(sentence)
        for name, start, end in _presented_names(sentence):
            if name in found or _described(name, has_class, library) or negated(sentence, start, end):
                continue
            if within(advice, start):
                continue
            if not _name_in_code(name, code, tokens, modules, printed):
                found[name] = {"kind": "invented name", "claim": name, "text": quoted(sentence)}
    return list(found.values())
