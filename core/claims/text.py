"""Reading answer prose: sentences, names in backticks, denials and advice (shared by the three checks)."""

from __future__ import annotations

import re

from mafioso.prompts.fences import FENCE_MARK

__all__ = ["FENCE", "SENTENCE", "SPAN", "advice_from", "blank", "denied", "mask", "negated", "quoted", "sentences",
           "within"]

# A denial just before the phrase, in the same clause: "not recursive", "no loop", "never prints",
# "without a decorator", "instead of a generator", "doesn't use recursion", "nobody gets stuck in an infinite loop".
_NEGATION = re.compile(r"\b(?:not|no|never|without|nor|neither|instead of|rather than|nothing|nobody|lacks?|"
                       r"\w+n't|cannot)\b", re.IGNORECASE)
_NEGATED_AFTER = re.compile(r"\s*(?:nothing|no\b|zero\b|not\b)", re.IGNORECASE)
_CLAUSE_BREAK = re.compile(r"[,;:()\u2014\u2013]|\s-\s|\bbut\b|\bso\b|\band\b|\bthen\b", re.IGNORECASE)
_NEGATION_WINDOW = 40  # characters before the phrase searched for a denial
# Advice and what-ifs claim nothing about the code as it is. "Otherwise" is not one of them: "otherwise it prints the
# number" tells an else branch, a claim like any other ("otherwise it would crash" has its "would").
_HYPOTHETICAL = re.compile(r"\b(?:would|could|should|might|instead of|rather|prefer|consider|imagine|suppose|"
                           r"if you|you'd|wanted|try|fix|swap|replace|or use|just use|normally|usually|"
                           r"typically|better|can do|does it too|do both jobs|do(?:es)? the same|"
                           r"for (?:exactly )?this job)\b", re.IGNORECASE)
# Advice in the imperative at the start of a clause: "Convert both to UTC with `astimezone`", "add XL".
_IMPERATIVE = re.compile(r"\W*(?:(?:but|and|or|so|then)\s+)?(?:add|use|convert|keep|call|pass|wrap|change|move|put|"
                         r"make|give|check|compare|switch|drop|set|store|write|turn|remove|guard|catch|close|"
                         r"reset|copy|seed|cast|lock|let|don't|never|always|just|better|skip|initiali[sz]e|loop|"
                         r"sort|open|read|build)\b", re.IGNORECASE)
# Where advice is told apart from claims: "`x` is a generator: a `for` loop would do" holds one of each.
_CLAUSE = re.compile(r"[;:\u2014]|,\s+(?:but|so|and|or|while|whereas)\b", re.IGNORECASE)
# A sentence ends at . ! ? followed by a space (so `json.dumps` and 3.5 stay inside it) or at a line break.
SENTENCE = re.compile(r"(?:[^.!?\n]|[.!?](?!\s|$))+[.!?]*")
SPAN = re.compile(r"`([^`\n]{1,120})`")
FENCE = FENCE_MARK  # where a fence may be (mafioso.prompts.fences)


def blank(match: re.Match) -> str:
    """Same length, all spaces: a ``re.sub`` replacement that keeps every offset of the text."""
    return " " * len(match.group(0))


def mask(match: re.Match) -> str:
    """Same length, one opaque word: "the sorted `menu` it" must not read as "sorted it"."""
    return "`" * len(match.group(0))


def quoted(sentence: str) -> str:
    """How a claim quotes the sentence it is in (its ``text``): stripped, at most 200 characters. The post-check
    finds the sentence again by this quote (:func:`mafioso.core.claim_check.drop_unsupported`)."""
    return sentence.strip()[:200]


def sentences(text: str) -> list[str]:
    """The sentences of ``text``, each with its closing punctuation."""
    return SENTENCE.findall(text)


def advice_from(sentence: str) -> int:
    """Where advice or a what-if starts in ``sentence`` (its length when there is none): from the first clause
    with a marker to the end ("The fix is X, or Y"), which claims nothing about the code as it is, while the
    clauses before it still do. Words in backticks or quotes are not markers ('could not connect')."""
    prose = re.sub(r'"[^"\n]{0,200}"|(?<!\w)\'[^\'\n]{0,200}\'(?!\w)', mask, SPAN.sub(mask, sentence))
    cuts = [0, *(m.start() for m in _CLAUSE.finditer(prose)), len(prose)]
    for start, end in zip(cuts, cuts[1:]):
        if _HYPOTHETICAL.search(prose, start, end) or _IMPERATIVE.match(prose, start, end):
            return start
    return len(sentence)


def within(advice_start: int, position: int) -> bool:
    """True if ``position`` lies in the advice that starts at ``advice_start`` (see :func:`advice_from`)."""
    return position >= advice_start


#: The facts sheet's own denial line ("- not in the code: recursion, yield, …"), which an answer may echo.
_SHEET_DENIAL = re.compile(r"\s*-?\s*not in the code:", re.IGNORECASE)


def negated(sentence: str, start: int, end: int) -> bool:
    """True if the phrase at ``sentence[start:end]`` is denied in its own clause (or listed after "not in the
    code:", the facts sheet's denial line)."""
    sheet = _SHEET_DENIAL.match(sentence)
    if sheet and start >= sheet.end():
        return True
    before = sentence[max(0, start - _NEGATION_WINDOW):start]
    breaks = list(_CLAUSE_BREAK.finditer(before))
    if breaks:
        before = before[breaks[-1].end():]
    return bool(_NEGATION.search(before)) or bool(_NEGATED_AFTER.match(sentence, end))


# A denial that governs the phrase and nothing else ("never recurses", "no recursion here", "isn't a generator",
# "doesn't use a lambda", "nothing here calls itself"): the negation, at most three filler words, the phrase,
# then the end of the clause. Narrower than :func:`negated`, which only has to spare a claim; this one makes one.
_DENIAL_BEFORE = re.compile(r"(?:\b(?:not|no|never|without|nor|neither|nothing|none|\w+n't)|\binstead of|"
                            r"\brather than)\s+(?:(?:a|an|the|any|one|single|real|actual|sign of|trace of|kind of|"
                            r"use|uses|using|involve|involves|have|has|need|needs|do|does|here|in here|in this code|"
                            r"function|method|at all|of them|of it|is|are|itself|ever)\s+){0,3}$", re.IGNORECASE)
# What may follow a denied phrase: the end of its clause, maybe a noun of its own ("not a recursive function")
# and "at all" or "here" first. Anything else ("never recurses forever", "no recursion limit", "doesn't recurse
# on an empty list", "not a generator expression") qualifies it: not a denial.
_DENIAL_AFTER = re.compile(r"(?:\s+(?:functions?|methods?|calls?|approach|version|solution|business|magic))?"
                           r"(?:\s+(?:at all|here|anywhere|whatsoever|in sight|involved|in (?:this|the|your) "
                           r"(?:code|function|snippet|one|case)))?"
                           r"(?:\s+or\s+anything(?:\s+(?:like\s+that|else|fancy))?)?"  # "no await or anything like that"
                           r"(?:\s*[,.;:!?)\u2014\u2013]|\s*$|\s+(?:and|but|so|just|only|either|instead)\b|\s+-\s)",
                           re.IGNORECASE)


def denied(sentence: str, start: int, end: int) -> bool:
    """True if the phrase at ``sentence[start:end]`` is plainly denied: a negation right before it ("never",
    "no", "isn't a", "doesn't use") and its clause ending right after it. Stricter than :func:`negated`:
    "doesn't recurse forever" and "no recursion limit" are denials of something else."""
    return bool(_DENIAL_BEFORE.search(sentence, 0, start)) and bool(_DENIAL_AFTER.match(sentence, end))
