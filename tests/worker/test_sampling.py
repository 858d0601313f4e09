"""Per-request sampling (worker/sampling.py): the draw itself, each engine honouring a request's temperature,
nucleus and seed while greedy rows stay greedy, and the API passing OpenAI's fields through (it refused any
temperature but 0, so a chat UI that sends its usual 0.7 got a 400 on every message)."""

import asyncio
import collections
import contextlib

import openai
import pytest
import torch

from mafioso.core.config import GenerationConfig, WorkerConfig
from mafioso.worker.control import Control
from mafioso.worker.sampling import GREEDY, Sampling
from mafioso.worker.service import Worker
from tests.helpers import SNIPPETS
from tests.worker.helpers import FakeEngine, engine_with, serving, worker_config

PAIRS = [(code, request) for request, code, _ in SNIPPETS[:3]]


def _draws(sampling: Sampling, scores: list[float], n: int = 4000) -> collections.Counter:
    generator = sampling.generator("cpu")
    return collections.Counter(sampling.draw(torch.tensor(scores), generator) for _ in range(n))


def test_a_draw_follows_temperature_and_nucleus_and_never_takes_a_banned_token():
    probs = [0.5, 0.3, 0.15, 0.05]
    logits = [float(p) for p in torch.tensor(probs).log()]
    plain = _draws(Sampling(1.0, seed=1), logits)
    assert all(abs(plain[i] / 4000 - p) < 0.03 for i, p in enumerate(probs))  # temperature 1: the model's own
    # the nucleus: tokens ranked after 0.5 + 0.3 >= 0.7 of the mass are never drawn
    assert set(_draws(Sampling(1.0, 0.7, seed=1), logits)) == {0, 1}
    assert set(_draws(Sampling(1.0, 0.0, seed=1), logits)) == {0}  # top_p 0: the most likely token only
    assert _draws(Sampling(0.05, seed=1), logits)[0] == 4000  # a cold temperature is nearly greedy
    assert _draws(Sampling(1e-300, seed=1), logits, 50)[0] == 50  # and a tiny one is greedy, not NaN
    hot = _draws(Sampling(2.0, seed=1), logits)
    assert hot[3] > plain[3] * 1.5  # a hot one flattens the distribution
    banned = _draws(Sampling(2.0, seed=1), [logits[0], float("-inf"), logits[2], logits[3]])
    assert banned[1] == 0 and set(banned) == {0, 2, 3}


def test_a_seed_repeats_its_draws_and_no_seed_does_not():
    logits = [0.0] * 50
    assert _draws(Sampling(1.0, seed=7), logits, 20) == _draws(Sampling(1.0, seed=7), logits, 20)
    seq = [[Sampling(1.0).draw(torch.tensor(logits), Sampling(1.0).generator("cpu")) for _ in range(8)]
           for _ in range(2)]
    assert seq[0] != seq[1]


def test_any_integer_a_client_sends_is_a_seed():
    """torch seeds with 64 bits and llama.cpp with 32: 2**70 overflowed and failed the batch."""
    logits = [0.0] * 50
    assert _draws(Sampling(1.0, seed=2**70), logits, 10) == _draws(Sampling(1.0, seed=2**70 + 2**64), logits, 10)
    assert _draws(Sampling(1.0, seed=-3), logits, 10) == _draws(Sampling(1.0, seed=2**64 - 3), logits, 10)
    assert Sampling(1.0, seed=2**40 + 5).seed_value(32) == 5


def test_sampling_settings_are_checked_and_the_default_is_the_workers():
    with pytest.raises(ValueError):
        Sampling(-0.1)
    with pytest.raises(ValueError):
        Sampling(1.0, top_p=1.5)
    assert GREEDY.greedy and Sampling.default(GenerationConfig()) is GREEDY
    assert Sampling.default(GenerationConfig(do_sample=True, temperature=0.6, top_p=0.8)) == Sampling(0.6, 0.8)
    assert Control().decoding(GenerationConfig()) is GREEDY
    assert Control(sampling=Sampling(0.9)).decoding(GenerationConfig()) == Sampling(0.9)


def _sampled(seed: int) -> Control:
    return Control(sampling=Sampling(1.5, 0.95, seed=seed))


def test_a_nucleus_wider_than_the_first_candidates_is_drawn_from_whole():
    """The nucleus is looked for among the most likely NUCLEUS_CANDIDATES tokens first (a sort of a whole
    262,144-token vocabulary was 20 of a draw's 27 ms on a CPU); where it reaches past them, the whole
    vocabulary is sorted, so no token of the nucleus is left out."""
    from mafioso.worker.sampling import NUCLEUS_CANDIDATES

    wide = 4 * NUCLEUS_CANDIDATES
    flat = [0.0] * wide + [-50.0] * 10  # the nucleus of 0.9: about 0.9 * wide tokens
    drawn = _draws(Sampling(1.0, 0.9, seed=2), flat, 3000)
    assert max(drawn) > NUCLEUS_CANDIDATES and max(drawn) < wide
    assert len(drawn) > 1.5 * NUCLEUS_CANDIDATES
    narrow = _draws(Sampling(1.0, 0.9, seed=2), [5.0, 4.0] + [-20.0] * wide, 500)
    assert set(narrow) == {0, 1}


def test_the_reference_engine_draws_each_seeded_row_from_its_own_generator_and_leaves_greedy_rows_greedy(engine):
    engine = engine_with(engine, GenerationConfig(max_new_tokens=12))
    greedy = engine.generate(PAIRS)
    alone = engine.generate(PAIRS[1:2], [_sampled(3)])[0]
    assert engine.generate(PAIRS[1:2], [_sampled(3)])[0] == alone  # the same seed: the same answer
    assert alone.text != greedy[1].text
    assert engine.generate(PAIRS[1:2], [_sampled(4)])[0].text != alone.text
    mixed = engine.generate([*PAIRS, PAIRS[1]], [Control(), _sampled(3), _sampled(9), _sampled(3)])
    assert mixed[0] == greedy[0]  # a greedy row beside sampled ones
    # each row draws from its own generator: the same request and seed twice in one batch, the same answer (one
    # generator shared by the batch would give the second other draws). Not held against the answer alone: a row's
    # logits in a padded batch differ from its own in the last bits, which a hot draw may feel (CI, 2026-12-06)
    assert mixed[3] == mixed[1]
    assert mixed[2].text not in (greedy[2].text, mixed[1].text)


def test_a_worker_that_samples_by_default_samples_and_a_greedy_request_overrides_it(engine):
    sampling = engine_with(engine, GenerationConfig(max_new_tokens=12, do_sample=True, temperature=1.5))
    greedy = engine_with(engine, GenerationConfig(max_new_tokens=12)).generate(PAIRS[:1])[0]
    assert sampling.generate(PAIRS[:1], [Control(sampling=GREEDY)])[0] == greedy
    drawn = {sampling.generate(PAIRS[:1])[0].text for _ in range(3)}  # no seed: fresh draws
    assert greedy.text not in drawn and len(drawn) > 1


def test_the_fast_engine_samples_in_its_slots_on_a_cpu_as_the_plain_engine_does(tiny_model_dir, monkeypatch):
    """Sampled answers used to leave the fast engine for its plain one (one `generate` each, not batched: a
    third of the greedy throughput under load on a CPU). Where its step runs eagerly they take a slot and
    their tokens are drawn on the host, by the same rule and seed as the plain engine's; in CUDA graphs they
    still take the plain path, and the decoder refuses to sample."""
    from mafioso.worker.decoder_settings import DecoderSettings
    from mafioso.worker.engines import load_engine
    from mafioso.worker.fast_decode import FastDecoder
    from mafioso.worker.fast_engine import FastEngine

    gen = GenerationConfig(max_new_tokens=12)
    reference = load_engine(WorkerConfig(base_model=str(tiny_model_dir), adapter="none", device="cpu",
                                         dtype="float32", fast_decode=False), gen)
    fast = FastEngine(reference.model, reference.tokenizer, gen, "cpu", DecoderSettings(slots=4, max_len=1024))
    try:
        pairs = [*PAIRS, PAIRS[0]]
        got = fast.generate(pairs, [Control(), _sampled(3), Control(max_tokens=5), _sampled(9)])
        assert got[1] == reference.generate(PAIRS[1:2], [_sampled(3)])[0]
        assert got[3] == reference.generate(PAIRS[:1], [_sampled(9)])[0]
        assert got[3].text != got[0].text  # drawn, not greedy
        assert [got[0], got[2]] == reference.generate([PAIRS[0], PAIRS[2]], [Control(), Control(max_tokens=5)])
        assert fast.stats.prefill_prompts == 4  # every row took a slot
        assert not fast.decoder.draws  # a finished answer's slot is greedy again

        monkeypatch.setattr(FastDecoder, "samples", property(lambda self: False))  # as in CUDA graphs
        assert fast.generate(PAIRS[1:2], [_sampled(3)])[0] == got[1]
        assert fast.stats.prefill_prompts == 4  # the plain engine's path
        with pytest.raises(ValueError, match="greedily only"):
            fast.decoder.set_sampling(0, Sampling(0.7, seed=1))
    finally:
        fast.close()


def test_llama_cpp_gets_the_requests_temperature_nucleus_and_seed(tiny_model_dir):
    from mafioso.worker.engines import load_engine
    from mafioso.worker.llamacpp_engine import LlamaCppEngine
    from tests.worker.torch_llama import TorchLlama

    reference = load_engine(WorkerConfig(base_model=str(tiny_model_dir), adapter="none", device="cpu",
                                         dtype="float32", fast_decode=False), GenerationConfig(max_new_tokens=8))
    engine = LlamaCppEngine(TorchLlama(reference.model), reference)
    [greedy] = engine.generate(PAIRS[:1])
    first, again = (engine.generate(PAIRS[:1], [_sampled(11)])[0] for _ in range(2))
    assert first == again and first.text != greedy.text
    assert engine.llama.seeds == [11, 11]  # set before each sampled answer, not before the greedy one
    assert [(c["temp"], c["top_p"]) for c in engine.llama.calls] == [(0.0, 1.0), (1.5, 0.95), (1.5, 0.95)]


@contextlib.asynccontextmanager
async def _openai(engine):
    """The real worker on ``engine``, served on loopback, and an openai client for it."""
    cfg = worker_config()
    async with serving(Worker(engine, cfg), cfg) as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        try:
            yield client
        finally:
            await client.close()


def test_the_api_passes_openai_sampling_fields_to_the_engine():
    engine = FakeEngine()

    async def main():
        async with _openai(engine) as client:
            chat = [{"role": "user", "content": "x = 1"}]
            await client.chat.completions.create(model="mafioso", messages=chat, temperature=0.7, top_p=0.9, seed=5)
            await client.completions.create(model="mafioso", prompt=["a = 1", "b = 2"], temperature=1.2)
            await client.chat.completions.create(model="mafioso", messages=chat, temperature=0)
            await client.chat.completions.create(model="mafioso", messages=chat, seed=5)  # greedy: nothing to seed
            stream = await client.chat.completions.create(model="mafioso", messages=chat, temperature=0.5,
                                                          stream=True)
            async for _ in stream:
                pass

    asyncio.run(main())
    assert [c.sampling for c in engine.controls] == [
        Sampling(0.7, 0.9, 5), Sampling(1.2), Sampling(1.2), GREEDY, Sampling(seed=5), Sampling(0.5)]


def test_sampled_answers_through_the_api_repeat_with_a_seed_on_the_real_engine(engine):
    async def main():
        async with _openai(engine) as client:
            answers = [(await client.completions.create(model="mafioso", prompt="print(1 + 1)", temperature=1.5,
                                                        seed=seed)).choices[0].text for seed in (1, 1, 2)]
            greedy = (await client.completions.create(model="mafioso", prompt="print(1 + 1)")).choices[0].text
            return answers, greedy

    (one, again, other), greedy = asyncio.run(main())
    assert one == again and len({one, other, greedy}) == 3


def test_n_answers_each_draw_on_their_own_prompt_by_prompt():
    engine = FakeEngine()

    async def main():
        async with _openai(engine) as client:
            chat = await client.chat.completions.create(
                model="mafioso", messages=[{"role": "user", "content": "x = 1"}], n=3, temperature=0.8, seed=10)
            completion = await client.completions.create(model="mafioso", prompt=["a = 1", "b = 2"], n=2,
                                                         temperature=0.8)
            with pytest.raises(openai.BadRequestError, match="temperature"):
                await client.chat.completions.create(model="mafioso", messages=[{"role": "user", "content": "x"}],
                                                     n=2)
            return chat, completion

    chat, completion = asyncio.run(main())
    assert [c.index for c in chat.choices] == [0, 1, 2]
    assert [c.sampling for c in engine.controls[:3]] == [Sampling(0.8, seed=seed) for seed in (10, 11, 12)]
    assert chat.usage.prompt_tokens == 3 and chat.usage.completion_tokens == 9  # the prompt once, three answers
    assert [c.text for c in completion.choices] == ["explained a = 1"] * 2 + ["explained b = 2"] * 2
    assert [c.index for c in completion.choices] == [0, 1, 2, 3]
