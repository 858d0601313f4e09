"""Grounded decoding: names in backticks come from the code, words for constructs it lacks are never written."""

import functools
import re

import pytest
import torch

from mafioso.core.claims.names import EXCEPTIONS, library_types
from mafioso.core.config import GenerationConfig, WorkerConfig
from tests.helpers import SNIPPETS

LOOP = "def total(xs):\n    s = 0\n    for x in xs:\n        s += x\n    return s\n"
RECURSIVE = "def fact(n):\n    return 1 if n < 2 else n * fact(n - 1)\n"


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    from mafioso.worker.engines import load_engine

    gen = GenerationConfig(max_new_tokens=16, repetition_penalty=1.3)
    return load_engine(WorkerConfig(base_model=str(tiny_model_dir), adapter="none", device="cpu", dtype="float32",
                                    fast_decode=False), gen)


def test_words_for_missing_constructs_are_banned_and_true_ones_are_not(engine):
    grounding = engine.grounding
    assert "recursive" in grounding.banned_concepts(LOOP) and "recursive" not in grounding.banned_concepts(RECURSIVE)
    assert grounding.banned_concepts("this is not python (") == []  # nothing known, nothing banned
    # the tiny tokenizer has no 5-letter pieces: stand one in (the real one's are in the next test)
    recursive_tokens = grounding._concept_tokens["recursive"] = [42]
    assert grounding.for_answer(LOOP).mask()[recursive_tokens].all()
    assert not grounding.for_answer(RECURSIVE).mask()[recursive_tokens].any()


@pytest.mark.slow
def test_the_real_tokenizer_bans_whole_words_not_common_starts():
    from mafioso.core.base_model import load_tokenizer, resolve_base
    from mafioso.worker.grounded_decoding import Grounding

    tok = load_tokenizer(resolve_base("embedded"))
    grounding = Grounding(tok, 262144)
    pieces = {claim: {tok.decode([i]).strip() for i in ids} for claim, ids in grounding._concept_tokens.items()}
    assert {"recursive", "recursion", "Recursive"} <= pieces["recursive"] and "decorator" in pieces["decorator"]
    assert not {"Gener", "Compre", "Decor", "dec", "gen"} & set().union(*pieces.values())


@pytest.mark.slow
def test_a_span_may_spell_what_the_claim_check_accepts_and_nothing_invented():
    """Builtin exceptions and the classes of an imported standard module are names the claim check accepts in
    backticks: a span may spell them (it closed at once, "``ZeroDivisionError`"); invented names stay banned, and
    so do builtin type names, which made "`self.entries.set`" spellable."""
    from mafioso.core.base_model import load_tokenizer, resolve_base
    from mafioso.worker.grounded_decoding import Grounding

    tok = load_tokenizer(resolve_base("embedded"))
    grounding = Grounding(tok, 262144)
    loads = "import json\n\ndef load(path):\n    with open(path) as f:\n        return json.load(f)\n"

    def spellable(code, name):
        return set(tok.encode(name, add_special_tokens=False)) <= set(grounding.allowed_in_spans(code))

    for code in (LOOP, loads):
        assert spellable(code, "ZeroDivisionError") and spellable(code, "KeyError")
        assert not any(spellable(code, name) for name in ("zebra_frobnicate", "asyncio.get", "__frozen__", "helper",
                                                          "self.entries.set"))
    assert spellable(loads, "JSONDecodeError") and not spellable(LOOP, "JSONDecodeError")  # json imported


def test_inside_a_backtick_span_only_the_codes_tokens_and_closers_may_follow(engine, monkeypatch):
    tok, grounding = engine.tokenizer, engine.grounding
    monkeypatch.setattr(grounding, "_exceptions", set())  # the tiny vocabulary's pieces spell almost any name
    monkeypatch.setattr(grounding, "_tables", functools.lru_cache(grounding._build_tables))  # none kept from before
    rule = grounding.for_answer(LOOP)
    tick = tok.convert_tokens_to_ids("`")
    assert grounding.flips[tick] and not rule.inside
    assert rule.add(tick) and rule.inside  # a span opened: the mask changed
    allowed = set(grounding.allowed_in_spans(LOOP))
    inside = rule.mask()
    assert not inside[tok.encode("total", add_special_tokens=False)].any()  # the code's name
    assert not inside[tick]  # the span may close
    invented = [t for t in tok.encode(" zebra_frobnicate", add_special_tokens=False) if t not in allowed]
    assert invented and inside[invented].all()
    assert rule.add(tick) and not rule.inside
    assert not rule.mask()[invented].any()  # outside a span, prose is free


def test_answers_to_one_paste_share_its_tables_and_follow_their_own_spans(engine):
    tok, grounding = engine.tokenizer, engine.grounding
    first, second = grounding.for_answer(LOOP), grounding.for_answer(LOOP)
    assert all(a is b for a, b in zip(first.tables(), second.tables()))  # built once for the paste
    first.add(tok.convert_tokens_to_ids("`"))
    assert first.inside and not second.inside  # each answer's own place
    assert torch.equal(second.mask(), grounding._build_tables(LOOP)[0])  # the shared tables are unchanged


def test_span_tokens_are_the_codes_own_encodings_each_alone(engine):
    """The batched encode of the code and its names gives exactly the tokens of encoding each text on its own."""
    tok, grounding = engine.tokenizer, engine.grounding
    for _, code, _ in SNIPPETS:
        names = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", code)) | library_types(code) | EXCEPTIONS
        alone = {t for text in [code, *names, *(" " + n for n in names), *(n + "()" for n in names)]
                 for t in tok.encode(text, add_special_tokens=False)} | set(grounding._ticks)
        assert grounding.allowed_in_spans(code) == sorted(alone)


def test_the_generate_path_applies_the_mask(engine):
    from mafioso.worker.engine import _GroundedMask

    engine.grounding._concept_tokens["recursive"] = [42]
    rule = engine.grounding.for_answer(LOOP)
    banned = 42
    scores = torch.zeros(1, rule.mask().shape[0])
    scores[0, banned] = 10.0  # the model wants "recursive"
    out = _GroundedMask([rule], prompt_len=3)(torch.zeros(1, 3, dtype=torch.long), scores)
    assert out[0].argmax().item() != banned


@pytest.mark.parametrize("lookahead, staged", [(False, False), (True, False), (True, True)])
def test_fast_path_and_generate_agree_where_the_bans_bite(engine, lookahead, staged):
    """Token for token, with a span that really restricts the answer: the answer's own second token is made a
    span-opener, so what follows it must come from the code's few tokens. With lookahead (the GPU default) each
    step is launched before the host reads the last one: the decoder follows the span on the device. ``staged``:
    the tables reach the decoder's rows through per-slot staging, as on a GPU (page-locked there)."""
    from mafioso import prompts
    from mafioso.worker.decoder_settings import DecoderSettings
    from mafioso.worker.fast_engine import FastEngine

    requests = [("x = 1", None)] + [(code, request) for request, code, _ in SNIPPETS[:4]]
    ids = prompts.encode(engine.tokenizer, *requests[0])["input_ids"]
    free = AnswerFree()
    [(before, _)] = engine.decode([ids], grounding=[free])
    opener = before[1]
    engine.grounding.flips[opener] = engine.grounding.flip_mask[opener] = True
    fast = FastEngine(engine.model, engine.tokenizer, engine.gen, "cpu",
                      DecoderSettings(slots=2, max_len=1024, lookahead=lookahead))
    assert fast.lookahead is lookahead
    if staged:
        decoder = fast.decoder
        decoder._ground_stage = torch.ones(decoder.slots, 3, decoder.vocab, dtype=torch.bool)  # stale contents
    fast.plain.grounding = engine.grounding  # the patched rule: the plain engine it holds builds each answer's
    try:
        expected = [engine.generate([pair])[0] for pair in requests]
        assert fast.generate(requests) == expected
        [(after, _)] = engine.decode([ids], grounding=[engine.grounding.for_answer("x = 1")])
        allowed = set(engine.grounding.allowed_in_spans("x = 1"))
        assert after[:2] == before[:2] and after != before  # the span's mask changed the rest
        inside = after[2:next((i for i, t in enumerate(after[2:], 2) if engine.grounding.flips[t]), len(after))]
        assert inside and set(inside) <= allowed
    finally:
        engine.grounding.flips[opener] = engine.grounding.flip_mask[opener] = False
        fast.close()


class AnswerFree:
    """A grounding rule that bans nothing: the model's own choice."""

    def add(self, token):
        return False

    def on(self, device):
        return self

    def mask(self):
        return torch.zeros(1, dtype=torch.bool)


def test_an_answers_tables_are_built_on_the_host_whatever_the_engines_device(engine):
    # the worker's request threads build them: CUDA work there (a list index is a blocking copy that waits for
    # the decode step in flight) would stall the decode thread; the decoder copies them to its device itself
    from mafioso.worker.engine import GenerateEngine

    elsewhere = GenerateEngine(engine.model, engine.tokenizer, engine.gen, "meta", engine.persona)
    rule = elsewhere.grounding.for_answer(LOOP)
    assert {table.device.type for table in rule.tables()} == {"cpu"}
    assert rule.tables()[1].any() and not rule.tables()[1].all()  # real: inside a span, only the code's tokens
