"""Degenerate loops in an answer: found token by token, the answer ended there and cut back to before the loop.

A small model sometimes loops until the token limit: "No, no, no, …" a hundred times, one sentence again and
again, a count that never ends ("prints 1, 2, 3, … 40, 41"), or one sentence with a word counting on
("Counting to one, then dividing … Counting to two, then dividing …"). Three rules, each cheap per token:

* a **repeat**: the answer's last tokens are one unit of 1-12 tokens repeated at least 4 times, covering at
  least ``span`` tokens (20 by default: ten "no,"s, four copies of a sentence of 5-12 tokens). Not 16: Gemma
  writes a number one digit per token, and Python prints 1/3 as 0.3333333333333333, 16 threes. A longer unit
  of 13-64 tokens (a whole sentence or two, "Omertà on this one? Not really, pal: …" again and again) counts
  from 3 copies: no shipped reference repeats a 13-token stretch even twice in a row, and tuned models loop on
  such sentences too (docs/BENCHMARKS.md);
* a **count**: ``count`` numbers in a row (10 by default), separated by commas, in steps of one size
  ("1, 2, 3, …", "0, 5, 10, …", "120, 120, …"). The shipped references list at most 6 such numbers
  ("1, 2, 3, 4, 5, 6"); a correct answer for ``range(10)`` lists 10 and stays below the rule, which counts
  only numbers followed by a comma;
* a **variant**: ``variants`` sentences in a row (6 by default), each of at least ``variant_tokens`` tokens (8)
  and each the sentence before it with one token changed, same length. The tuned Qwen adapter counted so
  to the token limit when asked "is there a bug?" (docs/BENCHMARKS.md). No shipped reference has even 3 such
  sentences in a row (with either base's tokenizer); 4 or 5 parallel sentences ("Row one gets …", "Row two
  gets …") may be a true list, so they stay. Only sentence ends cost anything: one comparison of two
  sentences.

This is a stop rule, not a ban: it never changes which token comes next, so names like ``MAX_LOANS`` are
never mangled (the n-gram ban, :mod:`mafioso.worker.ngram_ban`, can), and it only looks at the answer's own tokens. Both
decode paths feed one :class:`LoopGuard` per answer, through the worker's ``AnswerRules``
(``worker/decoding_rules.py``), and end the answer when it fires; the final text is cut by
:func:`find_loop` + :func:`cut_loop` in ``GenerateEngine._finish``, shared by both paths, so the same tokens
give the same cut. The rule is in core because it is also what ``mafioso eval`` measures (``loop_rate`` counts
the answers it found looping, cut or not: mafioso.trainer.metrics) and what a stream holds back
(mafioso.worker.token_stream).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["SENTENCE_END", "Loop", "LoopGuard", "LoopRule", "TokenPieces", "cut_loop", "find_loop"]


@dataclass(frozen=True)
class LoopRule:
    """When an answer counts as looping; ``span`` and ``count`` come from ``GenerationConfig.loop_span`` and
    ``loop_count``."""

    span: int = 20  # tokens a repeated unit must cover
    count: int = 10  # comma-separated numbers in steps of one size
    repeats: int = 4  # copies of the unit, at least
    max_period: int = 12  # longest unit, in tokens
    long_period: int = 64  # longest unit of the long-repeat half (units of max_period + 1 to long_period tokens)
    long_repeats: int = 3  # copies of such a unit, at least
    variants: int = 6  # sentences in a row, each the one before with one token changed (0: that rule off)
    variant_tokens: int = 8  # the shortest such sentence, in tokens

    @classmethod
    def of(cls, gen) -> LoopRule:
        """The rule a :class:`mafioso.core.config.GenerationConfig` asks for."""
        return cls(span=gen.loop_span, count=gen.loop_count)


@dataclass(frozen=True)
class Loop:
    """Where an answer's loop is, in token positions of the answer."""

    kind: str  # "repeat", "count" or "variant"
    start: int  # the loop's first token
    keep: int  # just past its first occurrence: a repeat's first unit, a count's first number
    period: int = 0  # a repeat's unit, a variant's first sentence, in tokens


class TokenPieces(dict):
    """``pieces[token]``: the token's text on its own (``tokenizer.decode([id])``), decoded once and remembered,
    with three facts the rules ask of every token: does it hold a digit, does it end inside a word (the count
    rule), does it end a sentence (the variant rule). A dict, so that a token seen before costs one lookup."""

    def __init__(self, tokenizer):
        super().__init__()
        self._decode = tokenizer.decode

    def __missing__(self, token: int) -> tuple[str, bool, bool]:
        piece = self._decode([token])
        known = self[token] = (piece, any("0" <= c <= "9" for c in piece), _wordy(piece[-1:]),
                               bool(_ENDS_SENTENCE.search(piece)))
        return known


def _wordy(c: str) -> bool:
    return c.isalnum() or c == "_"


#: A token that ends a sentence: . ! ? or … last (closing quotes, brackets or markdown may follow), or a newline.
_ENDS_SENTENCE = re.compile(r"[.!?…][\"'”’)\]*_`]*\s*$|\n")


class LoopGuard:
    """Follows one answer, one token at a time (:meth:`add`). Per token: one look into the last ``max_period``
    tokens, and only where the token is among them a pass over the periods; for long units a pass over the
    token's own positions among the last ``long_period`` tokens; for the count rule one dict lookup, and only
    for tokens that hold digits or follow a number a pass over their characters."""

    def __init__(self, rule: LoopRule, pieces: TokenPieces):
        self.rule = rule
        self.pieces = pieces
        self.loop: Loop | None = None
        self._tokens: list[int] = []
        # repeat rule: _since[p] is where the current run of tokens equal to the one p before began (the
        # answer's tail then has period p over n + 1 - _since[p] + p tokens); a run cannot start before p,
        # nor before _reset, set when a token matches none of the last max_period tokens (every run ends)
        self._since = list(range(rule.max_period + 1))
        self._reset = 0
        self._need = [0] + [max(rule.repeats * p, rule.span) - p for p in range(1, rule.max_period + 1)]
        # long repeats: each token's positions among the last long_period tokens, and for each period p with
        # a run ending at the last token (it equals the token p before), where that run began; a token then
        # costs a look at its own recent positions, a few in prose
        self._at: dict[int, list[int]] = {}
        self._runs: dict[int, int] = {}
        # count rule: a small automaton over characters
        self._num = ""  # the number being read
        self._num_start = self._num_end = 0  # its first token, and just past the token of its last digit
        self._wordy = False  # the last character was a letter, digit or underscore: a digit next is in a name
        self._after_comma = False  # a listed number and its comma were read; spaces, then the next number
        self._minus = False  # a "-" after such a comma
        self._prev: float | None = None  # the list's last number (None: no list)
        self._step: float | None = None
        self._count = 0  # numbers at the end of the list in steps of ``_step``
        self._list_start = self._first_end = 0
        # variant rule: where the sentence being written began, the last finished one (start, end), and the
        # first sentence of the run of variants it ends (each the one before with one token changed)
        self._sentence = 0
        self._last: tuple[int, int] = (0, 0)
        self._run: list[tuple[int, int]] = []

    def add(self, token: int) -> bool:
        """Feed the answer's next token; True once the answer loops (:attr:`loop` then says where)."""
        if self.loop is not None:
            return True
        tokens = self._tokens
        n = len(tokens)
        tokens.append(token)
        if self.rule.span:
            periods = self.rule.max_period
            if token not in tokens[n - periods if n > periods else 0:n]:
                self._reset = n + 1
            elif self._repeats(token, n):
                return True
            if self.rule.long_period > periods and self._long_repeats(token, n):
                return True
        piece, digits, ends_wordy, ends_sentence = self.pieces[token]
        if ends_sentence and self.rule.variants and self._varies(n):
            return True
        if self.rule.count:
            if digits or self._num or self._after_comma:
                return self._counts(piece, n)
            self._wordy = ends_wordy  # prose: nothing to read but where a word ends
        return False

    def _varies(self, n: int) -> bool:
        """A sentence ended at token ``n``: the variant rule's one comparison, with the sentence before."""
        tokens, (start, end), (a, b) = self._tokens, (self._sentence, n + 1), self._last
        self._sentence, self._last = end, (start, end)
        if end - start < self.rule.variant_tokens or end - start != b - a:
            self._run = [(start, end)]
            return False
        changed = 0
        for i in range(end - start):
            if tokens[start + i] != tokens[a + i]:
                changed += 1
                if changed > 1:
                    self._run = [(start, end)]
                    return False
        self._run.append((start, end))
        if len(self._run) >= self.rule.variants:
            first, first_end = self._run[0]
            self.loop = Loop("variant", start=first, keep=first_end, period=first_end - first)
            return True
        return False

    def _repeats(self, token: int, n: int) -> bool:
        tokens, since, need, reset = self._tokens, self._since, self._need, self._reset
        for p in range(1, min(self.rule.max_period, n) + 1):
            if tokens[n - p] != token:
                since[p] = n + 1
            else:
                start = since[p] = max(since[p], reset)
                if n + 1 - start >= need[p]:
                    self.loop = Loop("repeat", start=start - p, keep=start, period=p)
                    return True
        return False

    def _long_repeats(self, token: int, n: int) -> bool:
        seen = self._at.get(token)
        if seen is None:  # a token new to the answer ends every run
            self._at[token] = [n]
            self._runs = {}
            return False
        rule, last, runs = self.rule, self._runs, {}
        while seen[0] < n - rule.long_period:
            del seen[0]
            if not seen:
                break
        for q in reversed(seen):  # the shortest period first, as the short half does
            p = n - q
            if p > rule.max_period:
                start = runs[p] = last.get(p, n)  # the run goes on if it reached the last token
                if n + 1 - start >= (rule.long_repeats - 1) * p:
                    self.loop = Loop("repeat", start=start - p, keep=start, period=p)
                    return True
        seen.append(n)
        self._runs = runs
        return False

    def _counts(self, piece: str, n: int) -> bool:
        for c in piece:
            if "0" <= c <= "9":
                if self._num:
                    self._num += c
                elif not self._wordy:  # a number starts (a digit inside a name such as x2 does not)
                    if not self._after_comma:
                        self._prev = None  # not the next number of a list: a new one
                    self._after_comma = False
                    self._num, self._num_start = ("-" if self._minus else "") + c, n
                    self._minus = False
                if self._num:
                    self._num_end = n + 1
                self._wordy = True
            elif c == "." and self._num and "." not in self._num:
                self._num += c  # 2.5, or a full stop: then the next character ends the list
                self._wordy = False
            elif c == ",":
                if self._listed(n):
                    return True
                self._wordy = False
            elif c == " " and self._after_comma and not self._minus:
                pass
            elif c == "-" and self._after_comma and not self._minus:
                self._minus = True
            else:
                self._num, self._prev, self._after_comma, self._minus = "", None, False, False
                self._wordy = _wordy(c)
        return False

    def _listed(self, n: int) -> bool:
        """A comma: the number before it joins the list (or the list ends: a comma after a word)."""
        num, self._num = self._num, ""
        if not num or num.endswith("."):
            self._prev, self._after_comma, self._minus = None, False, False
            return False
        value = float(num)
        if self._prev is None:
            self._list_start, self._first_end, self._step, self._count = self._num_start, self._num_end, None, 1
        else:
            step = round(value - self._prev, 6)
            self._step, self._count = step, self._count + 1 if step == self._step else 2
        self._prev, self._after_comma = value, True
        if self._count >= self.rule.count:
            self.loop = Loop("count", start=self._list_start, keep=self._first_end)
            return True
        return False


def find_loop(ids: list[int], rule: LoopRule, pieces: TokenPieces) -> Loop | None:
    """The first loop in an answer's tokens, found exactly as the decode paths find it; None if it has none."""
    guard = LoopGuard(rule, pieces)
    for token in ids:
        if guard.add(token):
            return guard.loop
    return None


#: A sentence ends at . ! ? or … (with any closing quotes, brackets or markdown) before a space, or at a newline
#: (the cut's rule; a stream's hold-back reads shown text by it too, mafioso.worker.token_stream)
SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]*_`]*(?=\s|$)|\n")


def cut_loop(decode: Callable[[list[int]], str], ids: list[int], loop: Loop) -> str:
    """The text of an answer that loops (``ids``, to where the loop was found) without the loop.

    A repeat whose unit holds a sentence end keeps one copy: up to the last sentence end of its first copy
    ("It adds one. It adds one. …" keeps "It adds one.", a unit of two sentences keeps both, a loop found from
    the full stop before its first sentence keeps that sentence too), or, where there is none after the loop's
    first token, the first sentence end after it. Otherwise ("No, no, no, …", a count)
    the answer ends at the last sentence end before the loop; with none there, it keeps the loop's first
    occurrence ("No, no", "prints 1") without trailing separators. A stream that holds back the repetition
    (mafioso.worker.token_stream) has shown no more than the kept text.
    """
    text = decode(ids)
    ends = [m.end() for m in SENTENCE_END.finditer(text) if text[:m.end()].strip()]
    if loop.period:
        low = len(decode(ids[:loop.start + 1]))
        # the first copy ends where the repetition begins; when the loop begins with the full stop of the
        # sentence before it, each copy ends with the full stop that begins the next
        copy = len(decode(ids[:loop.keep + (low in ends)]))
        high = len(decode(ids[:loop.start + 2 * loop.period - 1]))
        if in_copy := [end for end in ends if low < end <= copy]:
            return text[:in_copy[-1]]
        if one_copy := [end for end in ends if low < end <= high]:
            return text[:one_copy[0]]
    keep = len(decode(ids[:loop.keep]))
    before = [end for end in ends if end <= keep]
    return text[:before[-1]] if before else text[:keep].rstrip(" ,;:-–—")
