"""The decoding rules for one answer, written once and applied by both decode paths alike.

    rules = DecodingRules(gen, tokenizer)      # once per engine
    answer = rules.for_answer()                # once per answer
    for token in generated:
        if answer.add(token):                  # the answer stops here: ### or a loop
            break
        banned = answer.banned()               # the tokens it may not take next (n-gram bans)

Four rules live here:

* **section stop**: the answer ends once its text holds ``###`` (the model opening a new section of the prompt
  template, :data:`mafioso.prompts.SECTION_MARKER`); only a token that holds a ``#`` can complete it, so the
  last three tokens are decoded only then;
* **stop strings** (a request's OpenAI ``stop``): the answer ends once its text holds one of them; the text is
  cut before it (:func:`before_stop`, by the worker, on the streamed and the final text alike);
* **loop stop** (``stop_loops``): the answer ends where it starts to loop (:mod:`mafioso.core.loop_guard`);
* **n-gram bans** (``no_repeat_ngram``): no n-gram of the answer comes twice (:mod:`mafioso.worker.ngram_ban`).

``GenerateEngine`` feeds each row's tokens to its :class:`AnswerRules` from a stopping criterion and a logits
processor of ``model.generate``; the fast engine feeds them in its per-token record and hands the bans to the
decoder. Grounded decoding (:mod:`mafioso.worker.grounded_decoding`) is the one other token rule; the repetition
penalty is arithmetic on the logits, written once in :mod:`mafioso.worker.repetition_penalty` for every path.
"""

from __future__ import annotations

from mafioso import prompts
from mafioso.core.config import GenerationConfig
from mafioso.core.loop_guard import LoopGuard, LoopRule, TokenPieces
from mafioso.worker.ngram_ban import NgramBan

__all__ = ["AnswerRules", "DecodingRules", "before_stop", "host_bans"]


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

    def for_answer(self, stops: tuple[str, ...] = (), kept: tuple[int, ...] | list[int] = ()) -> AnswerRules:
        """A fresh follower for one answer, which also ends at any of the request's ``stops`` strings; ``kept``:
        the answer's tokens so far, fed first (an answer decoded again, :mod:`mafioso.worker.retry`)."""
        rules = AnswerRules(self, stops)
        for token in kept:
            rules.add(token)
        return rules


class AnswerRules:
    """Follows one answer: :meth:`add` each generated token; ``stop`` is how many tokens it had when ``###``, a
    stop string or a loop ended it (None while it runs); :meth:`banned` are the tokens it may not take next."""

    def __init__(self, rules: DecodingRules, stops: tuple[str, ...] = ()):
        self._rules = rules
        self._stops = stops
        # a stop string is found in the text of the last tokens: every token holds a byte of text at least
        self._stop_tokens = max((len(stop.encode()) for stop in stops), default=0) + 1
        self._tokens: list[int] = []
        self._ngrams = NgramBan(rules.gen.no_repeat_ngram) if rules.gen.no_repeat_ngram else None
        self._loops = LoopGuard(rules.loop_rule, rules.pieces) if rules.loop_rule is not None else None
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
        return self.stop is not None

    def banned(self) -> set[int]:
        """The tokens that may not come next (n-gram bans; empty without them)."""
        return self._ngrams.banned() if self._ngrams is not None else set()
