"""Retries of answers the claim post-check cuts (worker/retry.py): where they resume, which one is served, and
that every decode path continues an answer exactly where it was, with its first token banned."""

import contextlib

import pytest

from mafioso.core.claim_check import first_unsupported
from mafioso.core.claims.text import SENTENCE
from mafioso.core.config import GenerationConfig, WorkerConfig
from mafioso.core.errors import ConfigError
from mafioso.worker.control import Control
from mafioso.worker.retry import Resume, answer_with_retries, cuts
from tests.worker.helpers import engine_with

CODE = "def f():\n    return 1\n"


def _ids(engine, text: str) -> list[int]:
    return engine.tokenizer(text, add_special_tokens=False)["input_ids"]


@contextlib.contextmanager
def _three_engines(tiny_model_dir, gen: GenerationConfig):
    """``generate``, the fast path and llama.cpp (its stand-in over the same model), on the tiny model with ``gen``."""
    from mafioso.worker.decoder_settings import DecoderSettings
    from mafioso.worker.engines import load_engine
    from mafioso.worker.fast_engine import FastEngine
    from mafioso.worker.llamacpp_engine import LlamaCppEngine
    from tests.worker.torch_llama import TorchLlama

    reference = load_engine(WorkerConfig(base_model=str(tiny_model_dir), adapter="none", device="cpu",
                                         dtype="float32", fast_decode=False), gen)
    fast = FastEngine(reference.model, reference.tokenizer, gen, "cpu", DecoderSettings(slots=4, max_len=1024))
    try:
        yield reference, fast, LlamaCppEngine(TorchLlama(reference.model), reference)
    finally:
        fast.close()


class _Script:
    """A decode that answers from a script, one answer per call, and records what each call was given."""

    def __init__(self, engine, answers: list[str]):
        self.engine, self.answers, self.calls = engine, list(answers), []

    def __call__(self, prompt_ids, controls, grounding=None, resumes=None):
        self.calls.append(resumes)
        eos = [self.engine.tokenizer.eos_token_id]
        rows = []
        for resume in resumes or [None] * len(prompt_ids):
            prefix = list(resume.prefix) if resume else []
            rows.append((prefix + _ids(self.engine, self.answers.pop(0)) + eos, None))
        return rows


@pytest.fixture
def engine32(engine):
    return engine_with(engine, GenerationConfig(max_new_tokens=96))


def test_an_answer_that_loses_a_sentence_is_decoded_again_from_before_it(engine32):
    first = "It returns 1. `f` is recursive, pal. It is short."
    script = _Script(engine32, [first, " It calls nothing, capisce?"])
    control = Control()
    [answer] = answer_with_retries(engine32, [(CODE, None)], [control], script)
    assert answer.text == "It returns 1. It calls nothing, capisce?" and answer.dropped == 0 and answer.retried == 1
    [resume] = script.calls[1]
    assert engine32.tokenizer.decode(list(resume.prefix)) == "It returns 1."
    whole = _ids(engine32, first)
    assert resume.ban == {whole[len(resume.prefix)]} and len(resume.prefix) < len(whole)
    assert control.muted  # a retry's tokens are not streamed


def test_a_retry_no_better_is_not_served_and_the_next_round_bans_its_first_token_too(engine32):
    first = "It returns 1. `f` is recursive, pal."
    script = _Script(engine32, [first, " It is a recursive one.", " It ends."])
    [answer] = answer_with_retries(engine32, [(CODE, None)], [Control()], script)
    assert answer.text == "It returns 1. It ends." and answer.retried == 2
    bans = [call[0].ban for call in script.calls[1:]]
    assert len(bans[0]) == 1 and len(bans[1]) == 2 and bans[0] < bans[1]  # the same place, one more token banned


@pytest.mark.parametrize("retry", ["empty", "fewer kept"])
def test_a_retry_that_says_less_is_not_served(engine32, retry):
    """Nothing dropped is not enough: a retry that ends at once, or keeps fewer sentences, says less."""
    first = "`f` is recursive, pal." if retry == "empty" else "It returns 1. `f` is recursive. It is short. It ends."
    second = "" if retry == "empty" else " Done."
    script = _Script(engine32, [first, second, second])
    [answer] = answer_with_retries(engine32, [(CODE, None)], [Control()], script)
    assert answer.dropped == 1 and answer.retried == 2 and answer.raw_text == first


def test_retries_off_and_answers_that_keep_everything_decode_once(engine32):
    off = engine_with(engine32, GenerationConfig(max_new_tokens=96, retry_unsupported=0))
    for engine, text in ((off, "It returns 1. `f` is recursive."), (engine32, "It returns 1.")):
        script = _Script(engine, [text])
        [answer] = answer_with_retries(engine, [(CODE, None)], [Control()], script)
        assert len(script.calls) == 1 and answer.retried == 0


def test_a_muted_control_hands_no_token_to_its_sink():
    got = []
    control = Control(sink=type("Sink", (), {"push": lambda self, token: got.append(token)})())
    control.emit(1)
    control.muted = True
    control.emit(2)
    assert got == [1] and control.first_token_at is not None


@pytest.mark.parametrize(("penalize_prompt", "no_repeat_ngram"), [(False, 0), (True, 0), (False, 2)])
def test_both_engines_continue_an_answer_exactly_and_ban_its_first_new_token(tiny_model_dir, penalize_prompt,
                                                                             no_repeat_ngram):
    """A resume with nothing banned gives the answer decoded without a stop (the kept tokens count as the
    answer's own for the repetition penalty, the n-gram bans, the rules and the limit); with its next token
    banned, the answer keeps its prefix and takes another, the same on the fast path and in llama.cpp (its
    stand-in over the same model) as on ``generate``."""
    gen = GenerationConfig(max_new_tokens=12, repetition_penalty=1.3, penalize_prompt=penalize_prompt,
                           no_repeat_ngram=no_repeat_ngram, grounded_decoding=False)
    with _three_engines(tiny_model_dir, gen) as (reference, fast, llama):
        prompt = reference.prompt_ids([(CODE, None)])
        [(ids, stop)] = reference.decode(prompt)
        assert len(ids) == 12 and stop is None
        # kept up to a token said before: with n-gram bans, what followed it then is banned first
        k = next((j for j in range(2, 11) if ids[j - 1] in ids[:j - 1]), 5)
        assert not no_repeat_ngram or ids[k - 1] in ids[:k - 1]
        kept = tuple(ids[:k])
        if no_repeat_ngram:  # banned at the first new token as at any other: what followed its last token before
            followed = {ids[j + 1] for j in range(k - 1) if ids[j] == ids[k - 1]}
            assert followed and followed <= fast._row(prompt[0], Control(), None, Resume(kept, frozenset())).first_ban
        for decode in (reference.decode, fast.decode, llama._decode_all):
            assert decode(prompt, [Control()], None, [Resume(kept, frozenset())]) == [(ids, None)]
        banned = Resume(kept, frozenset({ids[k]}))
        [(again, _)] = reference.decode(prompt, resumes=[banned])
        assert again[:k] == ids[:k] and again[k] != ids[k] and len(again) == 12
        assert fast.decode(prompt, resumes=[banned]) == llama._decode_all(prompt, [Control()], None, [banned]) \
            == [(again, None)]


class _CutScript(_Script):
    """A script whose answers end where their claim cut would end them: at the first dropped sentence, as a
    decode's :class:`mafioso.worker.decoding_rules.ClaimCut` does, the next sentence's first token left out."""

    def __call__(self, prompt_ids, controls, grounding=None, resumes=None):
        self.calls.append((resumes, [control.cut for control in controls]))
        eos = [self.engine.tokenizer.eos_token_id]
        rows = []
        for control, resume in zip(controls, resumes or [None] * len(prompt_ids)):
            prefix = list(resume.prefix) if resume else []
            text = self.engine.tokenizer.decode(prefix) + self.answers.pop(0)
            cut = None if control.cut is None else first_unsupported(CODE, text)
            if cut is not None:
                end = next(m.end() for m in SENTENCE.finditer(text) if m.end() > cut)
                ids = prefix + _ids(self.engine, text[len(self.engine.tokenizer.decode(prefix)):end])
                control.cut.at = len(ids)
                rows.append((ids + _ids(self.engine, " The"), len(ids)))  # what came after the cut is not kept
            else:
                rows.append((_ids(self.engine, text) + eos, None))
        return rows


def test_a_cut_answer_is_retried_from_its_dropped_sentence_and_a_retry_that_gets_further_is_served(engine32):
    on = engine_with(engine32, GenerationConfig(max_new_tokens=96, cut_unsupported="on"))
    script = _CutScript(on, ["It returns 1. `f` is recursive, pal. It is short.",
                             " It calls nothing. `g` is its helper. It ends.", " It ends, capisce?"])
    [answer] = answer_with_retries(on, [(CODE, None)], [Control()], script)
    assert answer.text == "It returns 1. It calls nothing. It ends, capisce?" and answer.retried == 2
    assert answer.first_text == "It returns 1. `f` is recursive, pal."  # cut there: the rest was never decoded
    resumes = [call[0][0] for call in script.calls[1:]]
    assert [on.tokenizer.decode(list(r.prefix)) for r in resumes] == ["It returns 1.", "It returns 1. It calls nothing."]
    assert all(cut is not None for _, cuts in script.calls for cut in cuts)  # every round decodes with the cut
    assert len(resumes[1].ban) == 1  # a new place: only the token that began its own dropped sentence


def test_an_answer_still_cut_after_the_last_round_is_decoded_on_to_its_end(engine32):
    on = engine_with(engine32, GenerationConfig(max_new_tokens=96, cut_unsupported="on", retry_unsupported=1))
    script = _CutScript(on, ["It returns 1. `f` is recursive, pal. It is short.", " `f` is recursive again.",
                             " It is short, capisce?"])
    [answer] = answer_with_retries(on, [(CODE, None)], [Control()], script)
    assert answer.text == "It returns 1. It is short, capisce?" and answer.dropped == 1 and answer.retried == 1
    resume, cut = script.calls[2][0][0], script.calls[2][1][0]
    assert on.tokenizer.decode(list(resume.prefix)) == "It returns 1. `f` is recursive, pal." and not resume.ban
    assert cut is None  # decoded on without the cut: the post-check drops the sentence as without it


def test_the_claim_cut_is_on_where_answers_decode_on_the_cpu_unless_set(engine32):
    assert cuts(engine32)  # the tiny engine decodes on the CPU
    assert not cuts(engine_with(engine32, GenerationConfig(cut_unsupported="off")))
    gpu = engine_with(engine32, GenerationConfig())
    gpu.device = "cuda"
    assert not cuts(gpu) and cuts(engine_with(gpu, GenerationConfig(cut_unsupported="on")))
    with pytest.raises(ConfigError):
        GenerationConfig(cut_unsupported="sometimes")


def test_every_engine_ends_a_row_where_its_claim_cut_says(tiny_model_dir):
    """The cut is one of the decoding rules: ``generate``, the fast path and llama.cpp (its stand-in over the same
    model) end the row there alike, and keep the tokens before it."""
    from mafioso.worker.decoding_rules import ClaimCut

    class CutAt(ClaimCut):  # a stand-in for the check: the sentence that ends at the fifth token is dropped
        def ends(self, tokens, rules):
            if len(tokens) == 5:
                self.at = 4
            return self.at is not None

    with _three_engines(tiny_model_dir, GenerationConfig(max_new_tokens=12, grounded_decoding=False)) as engines:
        reference, fast, llama = engines
        prompt = reference.prompt_ids([(CODE, None)])
        [(ids, _)] = reference.decode(prompt)
        for decode in (reference.decode, fast.decode, llama._decode_all):
            control = Control(cut=CutAt(CODE))
            [(got, stop)] = decode(prompt, [control])
            assert stop == control.cut.at == 4 and got[:4] == ids[:4]
