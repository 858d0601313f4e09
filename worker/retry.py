"""Decoding an answer again from before the first sentence the claim post-check drops (``retry_unsupported``).

The post-check (:mod:`mafioso.core.claim_check`) drops a sentence whose claim the code contradicts: the answer
loses the sentence and what it would have said in its place (names, the voice; sometimes all of it). With
retries on, such an answer is decoded again from just before that sentence: its tokens up to there are kept as
they are, and the token that began the dropped sentence may not come first, so the model takes its next choice
there and goes on as it would. The new answer is served only if the post-check drops fewer of its sentences and
keeps as many (at least one); otherwise the next round tries the same place again with that first token banned
too. Each round decodes only the answers that still lose a sentence, in one batch, ``retry_unsupported`` rounds
(``GenerationConfig``) at most.

With the claim cut on (``cut_unsupported``; by default where answers decode on the CPU), every decode stops an
answer right after the first sentence the check drops (:class:`mafioso.worker.decoding_rules.ClaimCut`): the
retry starts at once, and the rest of an answer that is about to be decoded again is never decoded. A cut answer
ends at its dropped sentence, so a retry is served when it gets past that sentence (more sentences kept before
its own first dropped one) or ends with nothing dropped and as many kept (at least one); an answer still cut
after the last round is decoded on from where it was cut, to its end, and the post-check drops what it drops.

Nothing is run, and the model is not told why (no new prompt): the check that judges the retry is the one that
drops sentences anyway. A stream shows an answer's sentences only up to the first one the check drops
(:meth:`mafioso.worker.engine.GenerateEngine.text_so_far`), which every retry keeps, and a retry's own tokens
are not streamed (``Control.muted``): what a stream showed is never taken back, the rest comes with the answer.
An answer whose code the code post-check scrubbed or whose loop was cut, or that stops inside a backtick span
there, is not retried (its text is not its tokens' plain decoding; grounded decoding starts outside a span).
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from mafioso.core.claim_check import first_unsupported
from mafioso.core.claims.text import sentences
from mafioso.worker.control import Control
from mafioso.worker.decoding_rules import ClaimCut
from mafioso.worker.grounded_decoding import AnswerGrounding

# ``engine`` below is the plain engine, mafioso.worker.engine.GenerateEngine (which imports this module: no type
# here), whose prompt, grounding, tokenizer and finishing every engine shares; an answer is its ``Generation``.

__all__ = ["Resume", "answer_with_retries", "cuts", "resume_point"]

#: ``decode(prompt_ids, controls, grounding, resumes)``: an engine's decode, each row continued from its resume
Decode = Callable[..., list[tuple[list[int], int | None]]]


@dataclass(frozen=True)
class Resume:
    """Where one answer is decoded again: its first tokens, kept, and the tokens the next one may not be. A decode
    given it returns the whole answer (``prefix`` first) and counts its stop and limit from the answer's start."""

    prefix: tuple[int, ...]
    ban: frozenset[int]


def resume_point(engine, code: str, ids: list[int], answer) -> int | None:
    """How many of the answer's tokens ``ids`` come before the first sentence the post-check drops (``ids[k]``
    began it), or None when nothing is dropped or the answer cannot be continued there (module docstring)."""
    if not answer.dropped or answer.code_leak or answer.looped or not answer.raw_text:
        return None
    at = first_unsupported(code, answer.raw_text)
    if at is None:
        return None
    raw = engine.tokenizer.decode(ids[:answer.tokens], skip_special_tokens=True)
    at += len(raw) - len(raw.lstrip())  # the answer's text is the decoding, stripped
    # the first k whose text reaches into the sentence: ids[:k] is everything before its first character
    k = bisect.bisect_right(range(answer.tokens + 1), at,
                            key=lambda n: len(engine.tokenizer.decode(ids[:n], skip_special_tokens=True))) - 1
    return k if 0 <= k < answer.tokens else None


def _grounding(engine, code: str, prefix: tuple[int, ...]) -> AnswerGrounding | None | bool:
    """The answer's grounded-decoding rule, fed ``prefix`` (None when grounded decoding is off; False when the
    prefix ends inside a backtick span: not resumed there)."""
    if engine.grounding is None:
        return None
    rule = engine.grounding.for_answer(code)
    for token in prefix:
        rule.add(token)
    return False if rule.inside else rule


def answer_with_retries(engine, requests: list[tuple[str, str | None]], controls: list[Control],
                        decode: Decode) -> list:
    """The finished answers to ``requests``, decoded by ``decode`` and, where the post-check drops a sentence,
    again from before it (module docstring); every torch engine and the llama.cpp one answer through here."""
    prompts = engine.prompt_ids(requests)
    rounds = engine.gen.retry_unsupported if engine.gen.drop_unsupported else 0
    cutting = rounds > 0 and cuts(engine)
    for (code, _), control in zip(requests, controls, strict=True):
        control.cut = ClaimCut(code) if cutting else None
    rows = decode(prompts, controls, engine.groundings(requests))
    answers = engine.answers(requests, rows, controls)
    cut = {i for i, control in enumerate(controls) if _was_cut(control)}
    tried: dict[tuple[int, tuple[int, ...]], set[int]] = {}  # (answer, prefix): first tokens tried there
    for _ in range(rounds):
        redo: dict[int, tuple[Resume, AnswerGrounding | None]] = {}
        for i, answer in enumerate(answers):
            code, ids = requests[i][0], rows[i][0]
            k = None if controls[i].cancelled else resume_point(engine, code, ids, answer)
            if k is None or (grounding := _grounding(engine, code, tuple(ids[:k]))) is False:
                continue
            banned = tried.setdefault((i, tuple(ids[:k])), set())
            banned.add(ids[k])
            redo[i] = (Resume(tuple(ids[:k]), frozenset(banned)), grounding)
        if not redo:
            break
        for i in redo:
            controls[i].muted = True
            controls[i].cut = ClaimCut(requests[i][0]) if cutting else None
        again = _decode_again(engine, decode, prompts, controls, redo)
        for (i, (resume, _)), row in zip(redo.items(), again, strict=True):
            [candidate] = engine.answers([requests[i]], [row], [controls[i]])
            answers[i] = dataclasses.replace(answers[i], retried=answers[i].retried + 1,
                                             first_text=answers[i].first_text or answers[i].raw_text)
            if _better(candidate, answers[i], i in cut):
                rows[i], answers[i] = row, dataclasses.replace(candidate, retried=answers[i].retried,
                                                               first_text=answers[i].first_text)
                cut.discard(i)
                if _was_cut(controls[i]):
                    cut.add(i)
            elif len(row[0]) > len(resume.prefix):  # tried there: the next round bans its first token too
                tried[(i, resume.prefix)].add(row[0][len(resume.prefix)])
    _finish_cut(engine, requests, controls, decode, prompts, rows, answers, cut)
    return answers


def _decode_again(engine, decode: Decode, prompts: list[list[int]], controls: list[Control],
                  rows: dict[int, tuple[Resume, AnswerGrounding | None]]) -> list[tuple[list[int], int | None]]:
    """One decode of the answers ``rows`` names, each continued from its :class:`Resume` under its grounding."""
    return decode([prompts[i] for i in rows], [controls[i] for i in rows],
                  [grounding for _, grounding in rows.values()] if engine.grounding else None,
                  [resume for resume, _ in rows.values()])


def _was_cut(control: Control) -> bool:
    """Whether the claim cut ended the answer this control's last decode made."""
    return control.cut is not None and control.cut.at is not None


def cuts(engine) -> bool:
    """Whether the engine's decodes stop an answer at its first dropped sentence (``cut_unsupported``)."""
    setting = engine.gen.cut_unsupported
    return setting == "on" or setting == "auto" and str(engine.device) == "cpu"


def _finish_cut(engine, requests, controls: list[Control], decode: Decode, prompts: list[list[int]], rows: list,
                answers: list, cut: set[int]) -> None:
    """Decode the answers still cut after the last round on from where they were cut, to their end, in place:
    the post-check then drops their cut sentence as it would have without the cut."""
    finish = {}
    for i in sorted(cut):
        prefix = tuple(rows[i][0][:answers[i].tokens])
        if not controls[i].cancelled and (grounding := _grounding(engine, requests[i][0], prefix)) is not False:
            finish[i] = (Resume(prefix, frozenset()), grounding)
    for i in finish:
        controls[i].muted, controls[i].cut = True, None
    if not finish:
        return
    again = _decode_again(engine, decode, prompts, controls, finish)
    for i, row in zip(finish, again, strict=True):
        [done] = engine.answers([requests[i]], [row], [controls[i]])
        rows[i], answers[i] = row, dataclasses.replace(done, retried=answers[i].retried,
                                                       first_text=answers[i].first_text)


def _kept(answer) -> int:
    """How many sentences of the answer are served (the post-check's split)."""
    return len(sentences(answer.raw_text or answer.text)) - answer.dropped


def _better(candidate, answer, cut: bool = False) -> bool:
    """Whether a retry is served instead of ``answer``: fewer of its sentences dropped, and as many kept (at
    least one: a retry that ends at once has nothing dropped and nothing to say); of an answer ``cut`` at its
    dropped sentence (module docstring), also a retry that keeps more sentences before its own dropped one."""
    if cut and _kept(candidate) > _kept(answer):
        return True
    return candidate.dropped < answer.dropped and _kept(candidate) >= max(1, _kept(answer))
