"""No repeated n-grams in an answer: the tokens that would repeat one, counted over the answer's own tokens.

transformers' ``no_repeat_ngram_size`` also counts the prompt, so it would forbid an answer to copy the
code's names (the same trap as its repetition penalty, see ``GenerationConfig.penalize_prompt``). Both decode
paths use this class, one instance per answer, fed one token at a time by its
:class:`mafioso.worker.decoding_rules.AnswerRules`.
"""

from __future__ import annotations


class NgramBan:
    """Tracks one answer; :meth:`banned` are the next tokens that would complete an n-gram it already holds."""

    def __init__(self, n: int):
        if n < 2:
            raise ValueError("an n-gram ban needs n >= 2")
        self.n = n
        self._tokens: list[int] = []
        self._followers: dict[tuple[int, ...], set[int]] = {}

    def add(self, token: int) -> None:
        """Append the answer's next token."""
        self._tokens.append(token)
        if len(self._tokens) >= self.n:
            *head, last = self._tokens[-self.n:]
            self._followers.setdefault(tuple(head), set()).add(last)

    def banned(self) -> set[int]:
        """Tokens that may not come next."""
        if len(self._tokens) < self.n - 1:
            return set()
        return self._followers.get(tuple(self._tokens[len(self._tokens) - self.n + 1:]), set())
