"""The claim post-check: a served answer keeps no sentence its own code contradicts.

A small model still writes "a recursive function" for a loop or names a method the code never had. The facts
sheet in the prompt and the training data make that rarer; this check catches what slips through, the way the
code post-check (:mod:`mafioso.core.postcheck`) catches code. It uses the static half of ``mafioso eval``'s grounded
check (:mod:`mafioso.core.claims`): invented names, constructs the syntax tree lacks and ones it has that the
answer denies ("the function never recurses", "it has no `__init__`"), names in roles the code never gives them,
and printed values that none of the code's print calls can write ("the last line prints 'None'" of FizzBuzz; only
where every output of the code is in sight, :mod:`mafioso.core.claims.printable`). It reads the code, never runs
it, so it is safe on chat input; other claims about printed values need a run and are left alone.

A sentence with such a claim is dropped whole; the rest of the answer stays as written. Measured on the shipped
adapters' validation answers (docs/BENCHMARKS.md): most answers lose nothing, and the check is both the filter
and half the judge of ``grounded``, so eval also reports the model's own figure before it.
"""

from __future__ import annotations

from mafioso.core.claims import static_claims
from mafioso.core.claims.text import quoted, sentences
from mafioso.prompts.lines import line

__all__ = ["NOTHING_SURE", "drop_unsupported", "first_unsupported"]

#: The mafioso's line when every sentence of an answer was dropped (a persona's own: line("nothing_sure", name)).
NOTHING_SURE = line("nothing_sure")


def _flagged(code: str, text: str) -> tuple[list[str], set[str]]:
    """``text``'s sentences, and the quotes (:func:`quoted`) of those whose claims ``code`` contradicts."""
    parts = sentences(text)
    flagged: set[str] = set()
    remaining = text
    # a check reports a claim once per answer: each pass finds its next sentence, until none is left (a pass
    # that finds something drops a sentence, so there are at most as many passes as sentences)
    for _ in range(len(parts) + 1):
        claims = static_claims(code, remaining)
        new = {claim["text"].strip() for claim in claims} - flagged
        if not new:
            break
        flagged |= new
        # one sentence a line: the checks split it back into exactly these sentences
        remaining = "\n".join(s for s in parts if quoted(s) not in flagged)
    return parts, flagged


def _pieces(code: str, text: str) -> list[tuple[str, bool]]:
    """``text`` cut at its sentences' starts, each piece with whether its sentence is flagged: the pieces join
    back into ``text``, so what is kept keeps its own line breaks and spaces."""
    parts, flagged = _flagged(code, text)
    starts, at = [], 0
    for sentence in parts:
        at = text.index(sentence, at)  # the sentences are the text's own pieces, in order
        starts.append(at + len(sentence) - len(sentence.lstrip()))
        at += len(sentence)
    if not starts:
        return [(text, False)]
    bounds = [0, *starts[1:], len(text)]
    return [(text[start:end], quoted(sentence) in flagged) for sentence, start, end in zip(parts, bounds, bounds[1:])]


def drop_unsupported(code: str, text: str) -> tuple[str, int]:
    """``text`` without the sentences whose claims ``code`` contradicts, and how many were dropped. What stays is
    the text's own, line breaks included, so it extends what a stream showed of it (:func:`first_unsupported`)."""
    pieces = _pieces(code, text)
    dropped = sum(flagged for _, flagged in pieces)
    return ("".join(piece for piece, flagged in pieces if not flagged).strip() if dropped else text), dropped


def first_unsupported(code: str, text: str) -> int | None:
    """Where in ``text`` the first sentence that :func:`drop_unsupported` drops begins (None: it drops none).
    ``text[:at]`` is what an answer decoded again from there keeps (:mod:`mafioso.worker.retry`)."""
    at = 0
    for piece, flagged in _pieces(code, text):
        if flagged:
            return at + len(piece) - len(piece.lstrip())
        at += len(piece)
    return None
