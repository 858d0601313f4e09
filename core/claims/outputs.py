"""False outputs: a value the answer says is printed that is not in what the code really printed
(:func:`false_outputs`, given a run's output: ``mafioso eval`` on the dataset's own snippets) or, without a run,
that none of the code's print calls can write (:func:`false_prints`, read from the syntax tree by
:mod:`mafioso.core.claims.printable`: safe on chat input, so the claim post-check uses it)."""

from __future__ import annotations

import re
from collections.abc import Iterator

from mafioso.core.claims.printable import can_print, printable
from mafioso.core.claims.text import FENCE, advice_from, negated, quoted, sentences, within

__all__ = ["claimed_prints", "false_outputs", "false_prints", "in_output"]

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
# A print verb alone: "shows", "so you get" and "output" may speak of a returned value, which no print writes.
_PRINT_VERB = re.compile(r"\b(?:prints?|printed|printing)\b", re.IGNORECASE)
# "prints Fizz, Buzz or None": a bare None listed among the words after the verb, before the clause ends.
_CLAUSE_END = re.compile(r"[.;:!?)\u2014]|\b(?:so|because|when|if|while|since|but|which|that|unless|until|where|"
                         r"whenever|returns?|hands?)\b", re.IGNORECASE)
_LISTED = re.compile(r"\s*(?:,|\bor\b|\band\b|\bthen\b)\s*", re.IGNORECASE)
# An exception's name or message may be printed by a traceback, which no print call writes.
_EXCEPTION = re.compile(r"error|exception|traceback|warning", re.IGNORECASE)
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


def in_output(kind: str, value: str, stdout: str) -> bool:
    """True if a claimed printed value (:func:`claimed_prints`) is in the real output ``stdout`` (quotes, spacing
    and rounding forgiven)."""
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


def _claims(answer: str, verb: re.Pattern) -> Iterator[tuple[re.Match, str, list[tuple[str, str]]]]:
    """Each output verb of ``answer`` that is neither denied nor advice, its sentence, and the values listed
    right after it."""
    text = FENCE.sub(" ", answer).translate(_QUOTES)
    for sentence in sentences(text):
        advice = advice_from(sentence)
        for match in verb.finditer(sentence):
            if not negated(sentence, match.start(), match.end()) and not within(advice, match.start()):
                yield match, sentence, _claimed_values(sentence, match.end())


def claimed_prints(answer: str) -> list[tuple[str, str]]:
    """Every value the answer says is printed ("prints 'a', then 3"), as (kind, value): a quoted string, a
    bracketed literal, a number, or True/False/None; denials and advice left out."""
    return [value for _, _, values in _claims(answer, _PRINT_VERB) for value in values]


def _bare_none(sentence: str, pos: int) -> bool:
    """Whether a plain None is among the words listed after the verb ending at ``pos``."""
    rest = sentence[pos:]
    end = _CLAUSE_END.search(rest)
    items = _LISTED.split(rest[:end.start()] if end else rest)
    return any(item.strip(" '\"`").lower() == "none" for item in items)


def false_outputs(answer: str, output: str | None) -> list[dict]:
    """Values the answer says are printed that are not in ``output``; none when the output is unknown."""
    if output is None:
        return []
    found = []
    for verb, sentence, values in _claims(answer, _OUTPUT_VERB):
        if verb.group(2) and not output.strip():  # "so you get 25" of a value the code never prints
            continue
        for kind, value in values:
            if not in_output(kind, value, output):
                found.append({"kind": "false output", "claim": value, "text": quoted(sentence)})
    return found


def false_prints(code: str, answer: str) -> list[dict]:
    """Values the answer says are printed that none of the code's print calls can write
    (:func:`mafioso.core.claims.printable.printable`); none when the code's output is not all in sight."""
    lines = printable(code)
    if lines is None:
        return []
    found: dict[tuple[str, str], dict] = {}
    for verb, sentence, values in _claims(answer, _PRINT_VERB):
        claimed = [value for _, value in values]
        if "None" not in claimed and _bare_none(sentence, verb.end()):
            claimed.append("None")
        for value in claimed:
            if not _EXCEPTION.search(value) and not can_print(lines, value):
                found.setdefault((value, quoted(sentence)), {"kind": "false output", "claim": value,
                                                             "text": quoted(sentence)})
    return list(found.values())
