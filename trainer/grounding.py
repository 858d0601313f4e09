"""Is an answer true to its code? The ``grounded`` check of ``mafioso eval``.

:func:`unsupported_claims` lists what an answer says that the code itself contradicts, three kinds:

* ``invented name`` - a name the answer presents as the code's (in backticks, ``name()``, ``x.y``, "a
  function called x", "the x_y function") that appears nowhere in the code;
* ``false concept`` - the answer says recursive, generator, comprehension, decorator, ... (:data:`CONCEPTS`)
  and :func:`prompts.facts.code_features` says the code has no such construct;
* ``false output`` - a value the answer says is printed (a quoted string, a number, a list/dict/tuple
  literal after "prints", "outputs", "so you get", ...) that is not in what the code really printed.

Denials ("it is not recursive", "no loop here") and advice ("a ``for`` loop would be cleaner") claim nothing.
The checks read text and syntax trees only; the real output is handed in by the caller, who got it from
:mod:`trainer.sandbox` for dataset rows (never for chat input).

Score a dataset's own reference answers (the ceiling of the metric) and list every failing row::

    python -m trainer.grounding data/validation.json [data/train.json ...]
"""

from __future__ import annotations

import argparse
import builtins
import functools
import importlib
import keyword
import re
import sys
import warnings
from collections import Counter
from dataclasses import dataclass

from prompts.facts import code_features

__all__ = ["CONCEPTS", "KINDS", "Concept", "false_concepts", "false_outputs", "invented_names", "summarize_claims",
           "unsupported_claims"]

KINDS = ("invented name", "false concept", "false output")

_LOOPING = frozenset({"loop", "list comprehension", "dict comprehension", "set comprehension",
                      "generator expression"})
_COMPREHENSIONS = frozenset({"list comprehension", "dict comprehension", "set comprehension",
                             "generator expression"})

@dataclass(frozen=True)
class Concept:
    """One row of :data:`CONCEPTS`: a claim, the phrase that makes it, and what in the code makes it true."""

    claim: str
    phrase: str  # regex, matched case-insensitively outside backticks and double quotes
    features: frozenset[str]  # any one of these prompts.facts features supports the claim
    code: str | None = None  # or this regex on the code text, for what the syntax tree cannot name


#: The vocabulary of concept claims, in one table. Two more kinds of support are added per answer: what the
#: code really printed supports "prints" (logging), a run that ended in a traceback supports "raises".
CONCEPTS: tuple[Concept, ...] = (
    Concept("recursive", r"\brecurs(?:ive|ively|ion|ions|es|ing|e)\b|\bcalls? (?:it|him|her)self\b",
            frozenset({"recursion"}),
            code=r"rglob|\bwalk\(|\*\*/|/\*\*|recursive\s*=\s*True"),  # a folder searched to the bottom
    Concept("generator", r"\bgenerators?\b", frozenset({"generator", "generator expression"})),
    Concept("list comprehension", r"\blist comprehensions?\b", frozenset({"list comprehension"})),
    Concept("dict comprehension", r"\bdict(?:ionary)? comprehensions?\b", frozenset({"dict comprehension"})),
    Concept("set comprehension", r"\bset comprehensions?\b", frozenset({"set comprehension"})),
    Concept("comprehension", r"(?<!list )(?<!dict )(?<!set )(?<!dictionary )\bcomprehensions?\b", _COMPREHENSIONS),
    Concept("decorator", r"\bdecorat(?:or|ors|ed|es|ing)\b", frozenset({"decorator"})),
    Concept("dataclass", r"\bdata ?class(?:es)?\b", frozenset({"dataclass"})),
    Concept("async", r"\basync(?:hronous|hronously)?\b|\bawait(?:s|ed|ing)?\b|\bcoroutines?\b|\bevent loop\b",
            frozenset({"async"})),
    Concept("lambda", r"\blambdas?\b", frozenset({"lambda"})),
    Concept("class", r"\b(?:defines?|defining|declares?|declaring|builds?|creates?|sets? up)\s+(?:a|an|the|"
                     r"its own|one|two|three)\s+(?:new\s+|custom\s+|little\s+|small\s+|simple\s+)?class(?:es)?\b"
                     r"|\bclass (?:called|named)\b|\bis an? (?:\w+ )?class\b", frozenset({"class"}),
            code=r"(?<![\w.])[A-Z][a-z]\w*\("),  # "`Counter` is a class": the code makes an instance of one
    Concept("prints", r"\bprint(?:s|ed|ing)?\b", frozenset({"print"})),
    Concept("raises", r"\b(?:rais(?:es|e|ed|ing)|throws?|throwing)\s+(?:(?:a|an|the|its)\s+)?(?:\S+\s+){0,2}?"
                      r"(?:\w*error|\w*exception|exceptions?)\b", frozenset({"raise", "try"})),
    Concept("loops", r"(?<!event )\bloop(?:s|ed|ing)?\b", _LOOPING),
    Concept("sorts", r"\bsorts\b|\bsorting\b|\bsorts?\s+(?:it|them|the|by|in place)\b|\bsorted\s+(?:it|them|the)\b",
            frozenset({"sort"}),  # or by hand (a *sort* function, two items swapped), a library or a query
            code=r"(?i:sort|order by|order_by|value_counts|most_common|median|nlargest|nsmallest|insort)|"
                 r"(\w+)\[[^\]\n]+\],\s*\1\[[^\]\n]+\]\s*="),
    Concept("reads a file", r"\b(?:reads?|reading|loads?|loading)\s+(?:\S+\s+){0,3}?files?\b",
            frozenset({"file read"})),
    Concept("writes a file", r"\b(?:writes?|writing|saves?|saving)\s+(?:\S+\s+){0,3}?files?\b",
            frozenset({"file write"})),
    Concept("opens a file", r"\b(?:opens?|opening)\s+(?:\S+\s+){0,3}?files?\b",
            frozenset({"file read", "file write"})),
)
_CONCEPT_RES = tuple((c, re.compile(c.phrase, re.IGNORECASE), re.compile(c.code) if c.code else None)
                     for c in CONCEPTS)

# A denial just before the phrase, in the same clause: "not recursive", "no loop", "never prints",
# "without a decorator", "instead of a generator", "doesn't use recursion".
_NEGATION = re.compile(r"\b(?:not|no|never|without|nor|neither|instead of|rather than|nothing|lacks?|"
                       r"\w+n't|cannot)\b", re.IGNORECASE)
_NEGATED_AFTER = re.compile(r"\s*(?:nothing|no\b|zero\b|not\b)", re.IGNORECASE)
_CLAUSE_BREAK = re.compile(r"[,;:()\u2014\u2013]|\s-\s|\bbut\b|\bso\b|\band\b|\bthen\b", re.IGNORECASE)
_NEGATION_WINDOW = 40  # characters before the phrase searched for a denial
# Advice and what-ifs claim nothing about the code as it is.
_HYPOTHETICAL = re.compile(r"\b(?:would|could|should|might|instead|rather|prefer|consider|imagine|suppose|"
                           r"if you|you'd|wanted|try|fix|swap|replace|or use|just use|normally|usually|"
                           r"typically|otherwise|better|can do|does it too|do both jobs|do(?:es)? the same|"
                           r"for (?:exactly )?this job)\b", re.IGNORECASE)
# Advice in the imperative at the start of a clause: "Convert both to UTC with `astimezone`", "add XL".
_IMPERATIVE = re.compile(r"\W*(?:(?:but|and|or|so|then)\s+)?(?:add|use|convert|keep|call|pass|wrap|change|move|put|"
                         r"make|give|check|compare|switch|drop|set|store|write|turn|remove|guard|catch|close|"
                         r"reset|copy|seed|cast|lock|let|don't|never|always|just|better|skip|initiali[sz]e|loop|"
                         r"sort|open|read)\b",
                         re.IGNORECASE)
# Where advice is told apart from claims: "`x` is a generator: a `for` loop would do" holds one of each.
_CLAUSE = re.compile(r"[;:\u2014]|,\s+(?:but|so|and|or|while|whereas)\b", re.IGNORECASE)
# A sentence ends at . ! ? followed by a space (so `json.dumps` and 3.5 stay inside it) or at a line break.
_SENTENCE = re.compile(r"(?:[^.!?\n]|[.!?](?!\s|$))+[.!?]*")

# ------------------------------------------------------------------------------------- names

_SPAN = re.compile(r"`([^`\n]{1,120})`")
_FENCE = re.compile(r"```|~~~")
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
_TYPE_NAMES = frozenset({"int", "float", "complex", "str", "bytes", "bytearray", "bool", "list", "dict", "tuple",
                         "set", "frozenset", "object", "type", "NoneType", "None", "True", "False"}) | frozenset(
    name for name, value in vars(builtins).items() if isinstance(value, type) and issubclass(value, BaseException))
_KEYWORDS = frozenset(keyword.kwlist) | frozenset(keyword.softkwlist)


def _code_tokens(code: str) -> set[str]:
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


def _blank(match: re.Match) -> str:
    return " " * len(match.group(0))


def _mask(match: re.Match) -> str:
    """Same length, one opaque word: "the sorted `menu` it" must not read as "sorted it"."""
    return "`" * len(match.group(0))


def _presented_names(sentence: str) -> list[tuple[str, int, int]]:
    """Every name the sentence presents as code, with the span of text that presents it."""
    names = []
    for span in _SPAN.finditer(sentence):
        content = _STRING.sub(" ", span.group(1))
        names.extend((m.group(0), span.start(), span.end()) for m in _NAME.finditer(content))
    prose = re.sub(r'"[^"\n]{0,200}"', _blank, _SPAN.sub(_blank, sentence))  # same length: offsets hold
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


def _described(name: str, code_has_class: bool, library_types: set[str]) -> bool:
    """Names that describe rather than point into the code: keywords, types and exceptions (builtin, or of a
    standard module the code imports: a `timedelta`, a `JSONDecodeError`), and the special methods a class
    gets from Python (`__init__` of a dataclass, `__eq__`)."""
    base = name.split(".")[0]
    if name in _KEYWORDS or base in _KEYWORDS or name in _TYPE_NAMES or name in library_types:
        return True
    return code_has_class and name.startswith("__") and name.endswith("__")


# Standard modules that do something when imported (print, open a browser) or are slow to import.
_NOISY_MODULES = frozenset({"this", "antigravity", "__hello__", "__phello__", "idlelib", "tkinter", "turtle",
                            "turtledemo", "webbrowser", "ensurepip", "venv", "lib2to3", "pydoc"})


@functools.lru_cache(maxsize=256)
def _module_types(module: str) -> frozenset[str]:
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


def _library_types(code: str) -> set[str]:
    """Class names of the standard modules the code imports."""
    modules = {m.group(1) for m in re.finditer(r"^\s*(?:from|import)\s+(\w+)", code, re.MULTILINE)}
    return set().union(*(_module_types(m) for m in modules)) if modules else set()


def invented_names(code: str, answer: str, output: str | None = None) -> list[dict]:
    """Names the answer presents as the code's that appear nowhere in it (nor, when known, in its output)."""
    tokens, modules = _code_tokens(code), _plain_imports(code)
    printed = output or ""
    has_class = "class" in tokens
    library_types = _library_types(code)
    found: dict[str, dict] = {}
    for sentence in _sentences(_FENCE.sub(" ", answer)):
        advice = _advice(sentence)
        for name, start, end in _presented_names(sentence):
            if name in found or _described(name, has_class, library_types) or _negated(sentence, start, end):
                continue
            if _within(advice, start):
                continue
            if not _name_in_code(name, code, tokens, modules, printed):
                found[name] = {"kind": "invented name", "claim": name, "text": sentence.strip()[:200]}
    return list(found.values())


# ---------------------------------------------------------------------------------- concepts


def _sentences(text: str) -> list[str]:
    return _SENTENCE.findall(text)


def _advice(sentence: str) -> int:
    """Where advice or a what-if starts in ``sentence`` (its length when there is none): from the first clause
    with a marker to the end ("The fix is X, or Y"), which claims nothing about the code as it is, while the
    clauses before it still do. Words in backticks or quotes are not markers ('could not connect')."""
    prose = re.sub(r'"[^"\n]{0,200}"|(?<!\w)\'[^\'\n]{0,200}\'(?!\w)', _mask, _SPAN.sub(_mask, sentence))
    cuts = [0, *(m.start() for m in _CLAUSE.finditer(prose)), len(prose)]
    for start, end in zip(cuts, cuts[1:]):
        if _HYPOTHETICAL.search(prose, start, end) or _IMPERATIVE.match(prose, start, end):
            return start
    return len(sentence)


def _within(advice_from: int, position: int) -> bool:
    return position >= advice_from


def _negated(sentence: str, start: int, end: int) -> bool:
    """True if the phrase at ``sentence[start:end]`` is denied in its own clause."""
    before = sentence[max(0, start - _NEGATION_WINDOW):start]
    breaks = list(_CLAUSE_BREAK.finditer(before))
    if breaks:
        before = before[breaks[-1].end():]
    return bool(_NEGATION.search(before)) or bool(_NEGATED_AFTER.match(sentence, end))


def false_concepts(code: str, answer: str, output: str | None = None, raised: str | None = None) -> list[dict]:
    """Concept claims (:data:`CONCEPTS`) the code contradicts; none when the code does not parse.

    ``output`` (what a run printed) supports "prints" and ``raised`` (the exception a run ended with)
    supports "raises", for code that prints through logging or fails without a ``raise`` of its own.
    """
    features = code_features(code)
    if features is None:
        return []
    features = set(features)
    if output:
        features.add("print")
    if raised:
        features.add("raise")
    found = []
    seen = set()
    # Names (`sort_items`) and quoted text ("a loop of love") are not claims: blank them, keeping offsets.
    prose = re.sub(r'"[^"\n]{0,200}"', _mask, _SPAN.sub(_mask, _FENCE.sub(_mask, answer)))
    for at in _SENTENCE.finditer(prose):
        sentence = at.group(0)
        advice = _advice(answer[at.start():at.end()])
        for concept, pattern, code_support in _CONCEPT_RES:
            claim = concept.claim
            if claim in seen or concept.features & features or (code_support and code_support.search(code)):
                continue
            for match in pattern.finditer(sentence):
                if not _negated(sentence, match.start(), match.end()) and not _within(advice, match.start()):
                    found.append({"kind": "false concept", "claim": claim,
                                  "text": answer[at.start():at.end()].strip()[:200]})
                    seen.add(claim)
                    break
    return found


# ------------------------------------------------------------------------------------ outputs

_OUTPUT_VERB = re.compile(r"\b(?:(prints?|printed|printing|outputs?|output)|(shows?|showing|displays?|spits? out|"
                          r"so you get|you'll see|you see))\b", re.IGNORECASE)
_FILLER = re.compile(r"(?:\s*(?:out|up|the|a|an|just|exactly|first|then|now|only|both|value|values|number|"
                     r"numbers|string|strings|line|lines|list|dict|dictionary|tuple|result|word|text|of|as|"
                     r"is|are|:|-)\b)*\s*:?\s*", re.IGNORECASE)
_SEPARATOR = re.compile(r"\s*(?:,|and\b|then\b|followed by\b|\u2014)(?:\s*(?:and|then|finally|a|the|"
                        r"\w+ly)\b)*(?:\s*(?:plain|bare|lone|single|final|last|second|third|next)\b)?\s*",
                        re.IGNORECASE)
# What may follow a claimed value: the end of the clause or a small word. "prints 6 times 7" and "'Corleone'
# prints False" are not claims that 6 or 'Corleone' is printed.
_VALUE_END = re.compile(r"\s*(?:[,.;:!?)\u2014]|$|(?:and|then|or|on|in|for|with|at|from|when|if|because|since|"
                        r"after|before|so|but|while|each|every|once|twice|again|first|last|next)\b)",
                        re.IGNORECASE)
_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\w.]\d)")  # 1,000 is one number
_WORD_VALUE = re.compile(r"(?:True|False|None)\b")
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})
_MAX_VALUE = 300


def _quoted(text: str, pos: int) -> int | None:
    """End of the quoted string starting at ``pos`` (an apostrophe inside a word does not end it)."""
    quote = text[pos]
    end = pos + 1
    while end < len(text) and end - pos < _MAX_VALUE:
        if text[end] == "\n":
            return None
        if text[end] == quote and not (quote == "'" and end + 1 < len(text) and text[end + 1].isalpha()):
            return end + 1 if end > pos + 1 else None
        end += 1
    return None


def _bracketed(text: str, pos: int) -> int | None:
    """End of the balanced ``[...]``, ``{...}`` or ``(...)`` literal starting at ``pos``."""
    depth = 0
    for end in range(pos, min(len(text), pos + _MAX_VALUE)):
        char = text[end]
        if char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
            if depth == 0:
                return end + 1
        elif char == "\n":
            return None
    return None


def _value_at(text: str, pos: int) -> tuple[str, str, int] | None:
    """(kind, value, end) of the literal at ``pos``: a quoted string, a bracketed literal or a number."""
    if pos >= len(text):
        return None
    tick = text[pos] == "`"
    start = pos + tick
    if start >= len(text):
        return None
    char, found = text[start], None
    if char in "'\"":
        end = _quoted(text, start)
        found = ("string", text[start + 1:end - 1], end) if end else None
    elif char in "[{(":
        end = _bracketed(text, start)
        found = ("literal", text[start:end], end) if end and any(c.isalnum() for c in text[start:end]) else None
    elif (number := _NUMBER.match(text, start)) and not re.match(r"[A-Za-z%]", text[number.end():number.end() + 1]):
        found = ("number", number.group(0), number.end())
    elif word := _WORD_VALUE.match(text, start):
        found = ("word", word.group(0), word.end())
    if found and tick:
        if not text.startswith("`", found[2]):
            return None
        found = (found[0], found[1], found[2] + 1)
    return found


def _claimed_values(text: str, pos: int) -> list[tuple[str, str]]:
    """The literals listed right after an output verb ending at ``pos``: "prints 'a', then 'b' and 3"."""
    values = []
    pos = _FILLER.match(text, pos).end()
    while (value := _value_at(text, pos)) is not None:
        if not _VALUE_END.match(text, value[2]):
            break
        values.append(value[:2])
        separator = _SEPARATOR.match(text, value[2])
        if not separator or separator.end() == value[2]:
            break
        pos = separator.end()
    return values


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text.translate(_QUOTES).replace('"', "'"))


def _printed(kind: str, value: str, stdout: str) -> bool:
    """True if the claimed literal is in the real output (quotes, spacing and rounding forgiven)."""
    if kind == "string":
        wanted = " ".join(value.translate(_QUOTES).split()).strip(" .,!")
        return not wanted or wanted in " ".join(stdout.translate(_QUOTES).split())
    if kind == "literal":
        return _squash(value) in _squash(stdout)
    if kind == "word":
        return re.search(rf"\b{value}\b", stdout) is not None
    if re.search(rf"(?<![\d.]){re.escape(value)}(?![\d])", stdout):
        return True
    value = value.replace(",", "")
    claimed = float(value)
    places = len(value.split(".")[1]) if "." in value else 0
    for found in re.findall(r"-?\d+(?:\.\d+)?(?:e[+-]?\d+)?", stdout):
        actual = float(found)
        if actual == claimed or round(actual, places) == claimed or round(abs(actual), places) == claimed:
            return True
    return False


def false_outputs(answer: str, output: str | None) -> list[dict]:
    """Values the answer says are printed that are not in ``output``; none when the output is unknown."""
    if output is None:
        return []
    text = _FENCE.sub(" ", answer).translate(_QUOTES)
    found = []
    for sentence in _sentences(text):
        advice = _advice(sentence)
        for verb in _OUTPUT_VERB.finditer(sentence):
            if verb.group(2) and not output.strip():  # "so you get 25" of a value the code never prints
                continue
            if _negated(sentence, verb.start(), verb.end()) or _within(advice, verb.start()):
                continue
            for kind, value in _claimed_values(sentence, verb.end()):
                if not _printed(kind, value, output):
                    found.append({"kind": "false output", "claim": value, "text": sentence.strip()[:200]})
    return found


# ------------------------------------------------------------------------------------ together


# Output that changes from run to run, or needs the network the sandbox cuts, proves nothing.
_UNREPEATABLE = re.compile(r"\b(?:secrets|uuid|requests|urllib|httpx|aiohttp|socket|argv|argparse|environ|"
                           r"getenv)\b|"
                           r"\b(?:now|today|time|perf_counter|monotonic|getpid|urandom|id)\(")
_UNSEEDED_RANDOM = re.compile(r"\brandom\b")


def repeatable(code: str) -> bool:
    """True if a run's output stands for the code's output: no network, clock, pids or unseeded randomness."""
    if _UNREPEATABLE.search(code):
        return False
    return not _UNSEEDED_RANDOM.search(code) or "seed(" in code


def unsupported_claims(code: str, answer: str, output: str | None = None, raised: str | None = None) -> list[dict]:
    """Every claim of ``answer`` that ``code`` does not support; ``output`` is what a run of it printed (None
    when it did not run cleanly) and ``raised`` the exception a failed run ended with."""
    if output is not None and not repeatable(code):
        output = None
    return [*invented_names(code, answer, output), *false_concepts(code, answer, output, raised),
            *false_outputs(answer, output)]


def summarize_claims(per_answer: list[list[dict] | None]) -> dict:
    """``grounded`` (share of checked answers with no unsupported claim), how many were checked, and the
    count of unsupported claims per kind."""
    checked = [claims for claims in per_answer if claims is not None]
    kinds = Counter(claim["kind"] for claims in checked for claim in claims)
    return {"grounded": sum(not claims for claims in checked) / len(checked) if checked else None,
            "grounded_samples": len(checked),
            "unsupported": {kind: kinds.get(kind, 0) for kind in KINDS}}


# ------------------------------------------------------------------------------- reference scorer


def main(argv: list[str] | None = None) -> int:
    """Score each dataset file's reference answers and list every failing row with its reasons."""
    from trainer.dataset import load_samples
    from trainer.sandbox import SnippetRunner, isolation

    parser = argparse.ArgumentParser(prog="python -m trainer.grounding", description=main.__doc__)
    parser.add_argument("files", nargs="+", metavar="FILE", help="dataset file(s), each scored on its own")
    parser.add_argument("--no-run", action="store_true", help="do not run the snippets (no output check)")
    args = parser.parse_args(argv)
    runner = SnippetRunner()
    print(f"snippets run with isolation: {'(not run)' if args.no_run else isolation()}")
    for path in args.files:
        samples = load_samples([path])
        failing, reasons = [], Counter()
        for sample in samples:
            run = None if args.no_run else runner.run(sample.code)
            claims = unsupported_claims(sample.code, sample.explanation, run and run.output, run and run.raised)
            if claims:
                failing.append((sample, claims, run))
                reasons.update(f"{c['kind']}: {c['claim']}" for c in claims)
        score = summarize_claims([[]] * (len(samples) - len(failing)) + [c for _, c, _ in failing])
        print(f"\n== {path}: grounded {score['grounded']:.3f} ({len(samples) - len(failing)}/{len(samples)}), "
              f"unsupported claims {score['unsupported']}")
        print("most common: " + ", ".join(f"{reason} x{n}" for reason, n in reasons.most_common(15)))
        for sample, claims, run in failing:
            ran = ("not run" if run is None else f"not runnable: {run.reason} {run.raised or ''}".rstrip()
                   if run.output is None else f"ran, output {run.output[:120]!r}")
            print(f"\n-- {sample.key} ({ran})")
            for claim in claims:
                print(f"   {claim['kind']}: {claim['claim']!r} in: {claim['text']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
