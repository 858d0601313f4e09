"""The decoding rules for one answer, written once and applied by both decode paths alike.

    rules = DecodingRules(gen, tokenizer)      # once per engine
    answer = rules.for_answer()                # once per answer
    for token in generated:
        if answer.add(token):                  # the answer stops here: ### or a loop
            break
        banned = answer.banned()               # the tokens it may not take next (n-gram bans)

Five rules live here:

* **section stop**: the answer ends once its text holds ``###`` (the model opening a new section of the prompt
  template, :data:`mafioso.prompts.SECTION_MARKER`); only a token that holds a ``#`` can complete it, so the
  last three tokens are decoded only then;
* **stop strings** (a request's OpenAI ``stop``): the answer ends once its text holds one of them; the text is
  cut before it (:func:`before_stop`, by the worker, on the streamed and the final text alike);
* **loop stop** (``stop_loops``): the answer ends where it starts to loop (:mod:`mafioso.core.loop_guard`);
* **n-gram bans** (``no_repeat_ngram``): no n-gram of the answer comes twice (:mod:`mafioso.worker.ngram_ban`);
* **claim cut** (``Control.cut``, set by :mod:`mafioso.worker.retry` where ``cut_unsupported`` holds): the answer
  ends right after the first sentence the claim post-check would drop (:class:`ClaimCut`), so that its retry
  starts at once; it is checked only when a sentence has just ended, on the text so far.

``GenerateEngine`` feeds each row's tokens to its :class:`AnswerRules` from a stopping criterion and a logits
processor of ``model.generate``; the fast engine feeds them in its per-token record and hands the bans to the
decoder. Grounded decoding (:mod:`mafioso.worker.grounded_decoding`) is the one other token rule; the repetition
penalty is arithmetic on the logits, written once in :mod:`mafioso.worker.repetition_penalty` for every path.
"""

from __future__ import annotations

import re

from mafioso import prompts
from mafioso.core.claim_check import first_unsupported
from mafioso.core.config import GenerationConfig
from mafioso.core.loop_guard import LoopGuard, LoopRule, TokenPieces
from mafioso.worker.ngram_ban import NgramBan

__all__ = ["AnswerRules", "ClaimCut", "DecodingRules", "before_stop", "host_bans"]

# A sentence just ended: its closing mark, then the whitespace or line break the claim checks split sentences at
# (mafioso.core.claims.text.SENTENCE), within the last two tokens.
_SENTENCE_ENDED = re.compile(r"[.!?][\"'\u201d\u2019)\]*_`]*\s|\n")


def before_stop(text: str, stops: tuple[str, ...]) -> str:
    """``text`` up to the earliest of the ``stops`` strings in it (all of it when none is)."""
    cut = min((i for i in (text.find(stop) for stop in stops) if i >= 0), default=len(text))
    return text[:cut]


def host_bans(gen: GenerationConfig) -> bool:
    """Whether a rule of the host forbids tokens (n-gram bans): the fast decoder then needs each step's token
    read on the host before the next step runs, and keeps a ban mask per slot that the host writes. Grounded
    decoding is not one: the fast decoder follows it on the device (mafioso.worker.fast_decode)."""
    return bool(gen.no_repeat_ngram)


class DecodingRules:
    """What the rules need of the settings and the tokenizer, kept once per engine."""

    def __init__(self, gen: GenerationConfig, tokenizer, pieces: TokenPieces | None = None):
        self.gen = gen
        self.decode = tokenizer.decode
        self.pieces = pieces if pieces is not None else TokenPieces(tokenizer)  # each token's text, remembered
        self.loop_rule = LoopRule.of(gen) if gen.stop_loops else None

    def for_answer(self, stops: tuple[str, ...] = (), kept: tuple[int, ...] | list[int] = (),
                   cut: ClaimCut | None = None) -> AnswerRules:
        """A fresh follower for one answer, which also ends at any of the request's ``stops`` strings and at its
        claim ``cut``; ``kept``: the answer's tokens so far, fed first (an answer decoded again,
        :mod:`mafioso.worker.retry`: their sentences passed the check already)."""
        rules = AnswerRules(self, stops)
        for token in kept:
            rules.add(token)
        rules.cut = cut
        return rules


class ClaimCut:
    """The claim cut of one answer: after each sentence it ends, the claim post-check's test on the text so far
    (:func:`mafioso.core.claim_check.first_unsupported`); ``at`` is how many tokens the answer kept when a
    sentence failed it (None while none has), the token that began the next sentence left out."""

    def __init__(self, code: str):
        self.code = code
        self.at: int | None = None

    def ends(self, tokens: list[int], rules: DecodingRules) -> bool:
        """Whether the answer ends here, its last token having just begun a sentence after one the check drops."""
        if len(tokens) < 2 or not rules.pieces[tokens[-2]][3] \
                or not _SENTENCE_ENDED.search(rules.decode(tokens[-2:], skip_special_tokens=True)):
            return False
        if first_unsupported(self.code, rules.decode(tokens[:-1], skip_special_tokens=True)) is None:
            return False
        self.at = len(tokens) - 1
        return True


class AnswerRules:
    """Follows one answer: :meth:`add` each generated token; ``stop`` is how many tokens it had when ``###``, a
    stop string or a loop ended it, or how many it keeps when its claim cut did (None while it runs);
    :meth:`banned` are the tokens it may not take next."""

    def __init__(self, rules: DecodingRules, stops: tuple[str, ...] = ()):
        self._rules = rules
        self._stops = stops
        # a stop string is found in the text of the last tokens: every token holds a byte of text at least
        self._stop_tokens = max((len(stop.encode()) for stop in stops), default=0) + 1
        self._tokens: list[int] = []
        self._ngrams = NgramBan(rules.gen.no_repeat_ngram) if rules.gen.no_repeat_ngram else None
        self._loops = LoopGuard(rules.loop_rule, rules.pieces) if rules.loop_rule is not None else None
        self.cut: ClaimCut | None = None
        self.stop: int | None = None

    def add(self, token: int) -> bool:
        """Take the answer's next token; True when it ends the answer (``###`` or a stop string completed, or a
        loop found)."""
        self._tokens.append(token)
        if self._ngrams is not None:
            self._ngrams.add(token)
        if self.stop is not None:  # already over (generate pads a finished row): nothing more to find
            return False
        if "#" in self._rules.pieces[token][0] \
                and prompts.SECTION_MARKER in self._rules.decode(self._tokens[-3:]):
            self.stop = len(self._tokens)
        elif self._stops and any(stop in self._rules.decode(self._tokens[-self._stop_tokens:])
                                 for stop in self._stops):
            self.stop = len(self._tokens)
        elif self._loops is not None and self._loops.add(token):
            self.stop = len(self._tokens)
        elif self.cut is not None and self.cut.ends(self._tokens, self._rules):
            self.stop = self.cut.at
        return self.stop is not None

    def banned(self) -> set[int]:
        """The tokens that may not come next (n-gram bans; empty without them)."""
        return self._ngrams.banned() if self._ngrams is not None else set()
