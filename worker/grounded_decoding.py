"""Grounded decoding: an answer cannot *write* a name or a construct its code does not have.

The claim post-check (:mod:`mafioso.core.claim_check`) drops a sentence that says something the code
contradicts; the sentence, its persona and the names in it are lost. This rule acts a step earlier, at the
token the model picks, from the same two facts the check reads (nothing is run):

* **names in backticks**: inside an open backtick span (an odd number of backticks so far), only tokens of the
  code itself (its own tokenization, and each identifier it holds with and without a leading space), of the
  builtin exceptions and of the classes of the standard modules the code imports (which the claim check accepts
  in backticks: `` `ZeroDivisionError` ``, `` `JSONDecodeError` ``) and tokens that close the span may follow,
  so `` `asyncio.get` `` or `` `__frozen__` `` cannot be spelled when the code has neither. A span that these
  tokens cannot continue is closed by the model at once.
* **constructs the code lacks**: the first token of each word of :data:`mafioso.core.claims.CONCEPTS` whose
  construct the syntax tree lacks (``words``: "recursive" for a loop, "decorator", "generator", ...) is banned
  for the whole answer. Only a first token that is most of its word is banned, so common word starts stay free.

One :class:`AnswerGrounding` per answer, fed each generated token (:meth:`AnswerGrounding.add`); its
:meth:`AnswerGrounding.mask` is the vocabulary the next token may not take. Both decode paths use it, token for
token alike: a logits processor on ``generate``, and the fast decoder, which takes the answer's
:meth:`AnswerGrounding.tables` once and follows the span on the device from each step's own token.

The tables are built on the host, always: they are made in the worker's request threads, and CUDA work there
(a list index is a blocking copy that waits for the decode step in flight) stalls the decode thread; the decode
thread copies them to the device itself (:meth:`mafioso.worker.fast_decode.FastDecoder.set_grounding`).
"""

from __future__ import annotations

import re
from functools import lru_cache

import torch

from mafioso.core.claims import CONCEPTS
from mafioso.core.claims.names import EXCEPTIONS, imported_modules, module_types
from mafioso.prompts.facts import code_features

__all__ = ["AnswerGrounding", "Grounding"]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A word's first token is banned only when it is most of the word (5+ letters and 60 %), so that "Gener"
# ("General"), " Compre" ("Comprehensive") or " dec" stay free.
_MIN_BANNED_PREFIX = 5
#: Pastes whose grounded-decoding tables are kept (32 x 0.5 MB for Gemma; a repeated paste, a retried request)
TABLES_KEPT = 32


class Grounding:
    """What grounding needs of a tokenizer, computed once per engine: which tokens open or close a backtick
    span, and which words' first tokens to ban per concept."""

    def __init__(self, tokenizer, vocab_size: int):
        self.tokenizer = tokenizer
        self.vocab_size = vocab_size
        pieces = tokenizer.convert_ids_to_tokens(list(range(min(len(tokenizer), vocab_size))))
        #: token -> does it flip the answer in or out of a backtick span (an odd number of backticks)
        self.flips = [bool(p) and p.count("`") % 2 == 1 for p in pieces] + [False] * (vocab_size - len(pieces))
        self.flip_mask = torch.tensor(self.flips, dtype=torch.bool)  # the same, as a table
        self._ticks = [i for i, p in enumerate(pieces) if p and "`" in p]
        self._concept_tokens = {c.claim: self._first_tokens(c.words) for c in CONCEPTS if c.words}
        self._exceptions = self._name_tokens(EXCEPTIONS)  # allowed in every span: computed once
        # a standard module's classes, encoded once per module (the standard library only: module_types)
        self._module_tokens = lru_cache(maxsize=256)(lambda module: frozenset(self._name_tokens(module_types(module))))
        # an answer's masks depend on its code alone and are only read: built once per paste, for fewer pastes
        # than its facts are (two vocabulary-long masks each, 0.5 MB for Gemma's 262,144 tokens)
        self._tables = lru_cache(maxsize=TABLES_KEPT)(self._build_tables)

    def _first_tokens(self, words: tuple[str, ...]) -> list[int]:
        firsts = set()
        for word in words:
            for variant in (word, word.capitalize()):
                for text in (variant, " " + variant):
                    ids = self.tokenizer.encode(text, add_special_tokens=False)
                    piece = self.tokenizer.decode(ids[:1]).strip() if ids else ""
                    if (len(piece) >= max(_MIN_BANNED_PREFIX, 0.6 * len(variant))
                            and variant.lower().startswith(piece.lower())):
                        firsts.add(ids[0])
        return sorted(firsts)

    def banned_concepts(self, code: str) -> list[str]:
        """The concepts (claims of :data:`CONCEPTS` that have words) the code's syntax tree lacks; none when
        the code does not parse (then nothing is known)."""
        features = code_features(code)
        if features is None:
            return []
        features = set(features)
        return [c.claim for c in CONCEPTS if c.words and not c.features & features
                and not (c.code and re.search(c.code, code))]

    def allowed_in_spans(self, code: str) -> list[int]:
        """Token ids that may stand inside a backtick span: the code's own tokens, its identifiers, the builtin
        exceptions and the classes of the standard modules it imports, each alone (with and without a leading
        space, and called), and every token with a backtick (to close the span). Not builtin types or keywords:
        with ``set`` spellable, Gemma wrote "`self.entries.set`" of a dict."""
        allowed = self._name_tokens(set(_IDENTIFIER.findall(code)), code)
        allowed.update(self._exceptions)
        for module in imported_modules(code):
            allowed.update(self._module_tokens(module))
        allowed.update(self._ticks)
        return sorted(t for t in allowed if t < self.vocab_size)

    def _name_tokens(self, names, code: str = "") -> set[int]:
        """The tokens of ``code`` and of each name alone, with a leading space and called."""
        texts = [code] + [text for name in names for text in (name, " " + name, name + "()")]
        # one call for all: per text, half the cost of encode()
        return {token for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"] for token in ids}

    def for_answer(self, code: str) -> AnswerGrounding:
        """A fresh rule for one answer to ``code`` (its masks shared with other answers to the same code: read
        only)."""
        return AnswerGrounding(self.flips, *self._tables(code), self.flip_mask)

    def _build_tables(self, code: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(vocab,) bool each: the tokens banned outside a backtick span, and inside one."""
        outside = torch.zeros(self.vocab_size, dtype=torch.bool)
        banned = [t for claim in self.banned_concepts(code) for t in self._concept_tokens[claim]]
        if banned:
            outside[banned] = True
        inside = torch.ones(self.vocab_size, dtype=torch.bool)
        inside[self.allowed_in_spans(code)] = False
        return outside, inside | outside


class AnswerGrounding:
    """Follows one answer: :meth:`add` each token; :meth:`mask` bans what the next one may not be."""

    def __init__(self, flips: list[bool], outside: torch.Tensor, inside: torch.Tensor, flip_mask: torch.Tensor):
        self._flips = flips  # a list and a tensor of one table (Grounding.flips, Grounding.flip_mask)
        self._masks = (outside, inside)
        self._flip_mask = flip_mask
        self.inside = False  # within a backtick span

    def add(self, token: int) -> bool:
        """Take the answer's next token; True when it moved the answer in or out of a span (the mask changed)."""
        if token < len(self._flips) and self._flips[token]:
            self.inside = not self.inside
            return True
        return False

    def on(self, device: torch.device | str) -> AnswerGrounding:
        """This rule with its masks on ``device`` (for a decode loop that applies them there each step)."""
        moved = AnswerGrounding(self._flips, *(mask.to(device) for mask in self._masks), self._flip_mask)
        moved.inside = self.inside
        return moved

    def mask(self) -> torch.Tensor:
        """(vocab,) bool: True where the next token is banned."""
        return self._masks[self.inside]

    def tables(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The whole rule from the answer's start, (vocab,) bool each: the bans outside a span, the bans inside
        one, and the tokens that open or close a span (what :meth:`add` reads), for a decoder that follows the
        span itself."""
        return self._masks[0], self._masks[1], self._flip_mask
