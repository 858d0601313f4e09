"""Streamed answers (issue 20): tokens from both engines, safe text deltas, SSE over loopback, cancellation."""

import asyncio
import dataclasses
import json

import aiohttp
import openai
import pytest

from mafioso.core.config import GenerationConfig, WorkerConfig
from mafioso.worker.service import Worker
from mafioso.core.loop_guard import LoopRule, find_loop
from mafioso.worker.token_stream import StreamText, loop_safe, ready_tokens, settled, variant_safe
from mafioso.prompts.lines import line
from tests.helpers import SNIPPETS
from tests.worker.helpers import FakeEngine, engine_with, serving, worker_config

SENTENCES = "x = 1\ny = 2\nz = x + y\nprint(z)\n"  # the fake's answer ("explained <code>") has line ends


async def _collect(stream) -> tuple[list[str], str, object]:
    """(deltas before the last event, the text a client shows at the end, the final answer)."""
    deltas, shown = [], ""
    async for event in stream:
        if event.answer is None:
            deltas.append(event.delta)
            shown += event.delta
        else:
            shown = event.delta if event.replaced else shown + event.delta
            return deltas, shown, event.answer
    raise AssertionError("the stream ended without its answer")


# ------------------------------------------------------------------------------------------- the text


def test_settled_text_is_whole_sentences_only():
    assert settled("It counts. It sto") == "It counts."
    assert settled("It counts.") == ""  # the sentence may go on ("It counts.5"?): wait for what follows
    assert settled("line one\nline tw") == "line one"
    assert settled("no end yet ##") == ""


def test_stream_text_holds_back_tokens_and_says_when_the_final_text_replaces_what_was_sent():
    texts = {1: "One. T", 2: "One. Two. T", 3: "Uno. Two. Three."}
    text = StreamText(lambda ids: texts[len(ids)], lambda ids: len(ids) - 1, clock=iter(range(0, 100, 1)).__next__)
    assert text.add([0]) == ""  # held back
    assert text.add([0]) == "One."
    assert text.add([0]) == " Two."
    assert text.add([0]) == ""  # the text changed under what was sent: nothing more is shown
    assert text.finish("One. Two. Three.") == (" Three.", False)
    other = StreamText(lambda ids: "One. Two. T")
    assert other.add([0]) == "One. Two."
    assert other.finish("Uno.") == ("Uno.", True)


def test_a_repeat_that_may_become_a_loop_is_held_back_and_nothing_is_without_the_loop_rule():
    prose = list(range(40))
    assert loop_safe(prose, 12) == 28  # a new run may start in the last 12 tokens
    assert loop_safe(prose + [7, 8, 9] * 6, 12) == 40  # a run of period 3 from 43 on: a loop would start at 40
    assert ready_tokens(GenerationConfig(stop_loops=False))(prose) == 40
    assert ready_tokens(GenerationConfig())(prose) == 28
    unit = list(range(100, 120))  # a sentence of 20 tokens, said again: held back from where it repeats
    assert loop_safe(prose + unit + unit[:15], 12, 64) == 60
    assert loop_safe(prose + unit + unit + unit[:5], 12, 64) == 60
    assert loop_safe(prose + unit + unit[:15], 12) == 63  # without the long half: only the last 12 tokens


@pytest.mark.parametrize("text", ["It adds one. It adds one. It adds one. It adds one. It adds one. It adds one.",
                                  "No, no, no, no, no, no, no, no, no, no, no, no, no, no, no, no, no.",
                                  "It counts. It prints 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13 and more.",
                                  "The fix is to divide. " + "Omertà on this one? Not really, pal: the average of the "
                                  "whole bunch comes home divided by the length. " * 4,
                                  "A bug. " + " ".join(f"Counting to {k}, then dividing by all of them, the average."
                                                       for k in range(1, 8))])
def test_what_a_stream_shows_before_a_loop_is_never_cut_back(engine, text):
    """Token by token through the engine's own rules (loop cut included): the deltas only extend each other and
    end as the final answer."""
    engine = engine_with(engine, GenerationConfig(max_new_tokens=200))
    ids = engine.tokenizer(text, add_special_tokens=False)["input_ids"]
    stream = StreamText(lambda part: engine.text_so_far("x = 1", part), ready_tokens(engine.gen), hold=variant_safe)
    sent = "".join(stream.add([token], force=True) for token in ids)
    final = engine.text_so_far("x = 1", ids)
    assert stream.finish(final) == (final[len(sent):], False)
    assert find_loop(ids, LoopRule.of(engine.gen), engine.pieces) is not None  # each text loops


def test_variant_sentences_are_held_back_from_the_second_on_until_they_stop_varying():
    one, two, three = (f"Counting to {w}, then dividing, you get it." for w in ("one", "two", "three"))
    assert variant_safe(f"A bug. {one} {two} {three}") == f"A bug. {one}"
    assert variant_safe(f"A bug. {one} {two} {three} Then it ends here, pal.") == \
        f"A bug. {one} {two} {three} Then it ends here, pal."  # the run broke: a loop can no longer cut it
    assert variant_safe(f"A bug. {one}") == f"A bug. {one}"
    assert variant_safe("Row one wins big. Row two wins big.") == "Row one wins big."
    assert variant_safe("It adds. It subtracts numbers. It divides numbers today.") == \
        "It adds. It subtracts numbers. It divides numbers today."  # other lengths
    assert variant_safe("Ha ha. Ha ha.") == "Ha ha. Ha ha."  # under 3 words: the token rule's 8 tokens


def test_the_engine_text_never_shows_a_broken_character_or_a_section_marker(engine):
    """Fed token by token, the deltas only ever extend each other and end as the final answer."""
    code = "s = 'café'\n"
    answer = "It holds a café ☕ for you. It prints nothing. Capisce? ### Next"
    ids = engine.tokenizer(answer, add_special_tokens=False)["input_ids"]
    text = StreamText(lambda part: engine.text_so_far(code, part))
    sent = "".join(text.add([token], force=True) for token in ids)
    assert "\ufffd" not in sent and "#" not in sent and sent
    final = engine.text_so_far(code, ids)
    rest, replaced = text.finish(final)
    assert not replaced and sent + rest == final == "It holds a café ☕ for you. It prints nothing. Capisce?"


def test_a_stream_whose_first_sentence_is_dropped_never_shows_the_nothing_sure_line(engine):
    """Every sentence so far contradicted: the stream shows nothing yet (the persona's "nothing sure" line ends
    an answer that kept nothing); it used to show the line, then replace it with the sentences that followed."""
    code = "def f():\n    return 1\n"
    engine = engine_with(engine, dataclasses.replace(engine.gen, retry_unsupported=0))  # sentences dropped, not cut
    ids = engine.tokenizer("`f` is recursive, pal. It returns 1, capisce?", add_special_tokens=False)["input_ids"]
    text = StreamText(lambda part: engine.text_so_far(code, part))
    sent = "".join(text.add([token], force=True) for token in ids)
    assert line("nothing_sure") not in sent and "recursive" not in sent
    rest, replaced = text.finish(engine.text_so_far(code, ids))
    assert not replaced and sent + rest == "It returns 1, capisce?"
    only_false = engine.tokenizer("`f` is recursive, pal.", add_special_tokens=False)["input_ids"]
    assert engine.text_so_far(code, only_false) == ""


def test_with_retries_a_stream_shows_only_the_sentences_before_the_first_dropped_one(engine):
    """A retry decodes the answer again from before its first dropped sentence (worker/retry.py): a stream that
    showed a later sentence would have to take it back."""
    code = "def f():\n    return 1\n"
    ids = engine.tokenizer("It returns 1. `f` is recursive, pal. It is short, capisce?",
                           add_special_tokens=False)["input_ids"]
    assert engine.gen.retry_unsupported
    text = StreamText(lambda part: engine.text_so_far(code, part))
    sent = "".join(text.add([token], force=True) for token in ids)
    assert sent == "It returns 1." and engine.text_so_far(code, ids) == "It returns 1."


@pytest.mark.parametrize("fast", [False, True])
def test_both_engines_stream_exactly_the_answer_they_give_unstreamed(tiny_model_dir, fast):
    from mafioso.worker.engines import load_engine
    from mafioso.worker.decoder_settings import DecoderSettings
    from mafioso.worker.fast_engine import FastEngine

    gen = GenerationConfig(max_new_tokens=24)
    cfg = WorkerConfig(base_model=str(tiny_model_dir), adapter="none", device="cpu", dtype="float32",
                       fast_decode=False, max_batch_size=4)
    engine = load_engine(cfg, gen)
    if fast:
        engine = FastEngine(engine.model, engine.tokenizer, gen, "cpu", DecoderSettings(slots=4, max_len=1024))
    codes = [code for _, code, _ in SNIPPETS[:3]]

    async def main():
        worker = Worker(engine, cfg)
        await worker.start()
        try:
            plain = [await worker.explain(code) for code in codes]
            streams = [await worker.stream(code) for code in codes]  # decoded together
            streamed = await asyncio.gather(*(_collect(stream) for stream in streams))
            return plain, streamed, worker.registry
        finally:
            await worker.stop()

    try:
        plain, streamed, registry = asyncio.run(main())
    finally:
        engine.close()
    for answer, (_, shown, final) in zip(plain, streamed, strict=True):
        assert shown == final.text == answer.text
        assert final.tokens == answer.tokens
    assert registry.get_sample_value("mafioso_time_to_first_token_seconds_count") == 2 * len(codes)


# ------------------------------------------------------------------------------------------- over HTTP


def _streaming_worker(**engine_options):
    cfg = worker_config()
    return Worker(FakeEngine(**{"tokens": 8, "token_delay": 0.1, **engine_options}), cfg), cfg


def test_the_openai_client_streams_chat_and_completions_over_loopback():
    worker, cfg = _streaming_worker()

    async def main():
        async with serving(worker, cfg) as url:
            client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
            plain = await client.chat.completions.create(
                model="mafioso", messages=[{"role": "user", "content": SENTENCES}])
            chat = [chunk async for chunk in await client.chat.completions.create(
                model="mafioso", messages=[{"role": "user", "content": SENTENCES}], stream=True)]
            text = [chunk async for chunk in await client.completions.create(
                model="mafioso", prompt=SENTENCES, stream=True, max_tokens=4)]
            async with aiohttp.ClientSession() as http, http.get(url + "/metrics") as metrics:
                return plain, chat, text, await metrics.text()

    plain, chat, text, metrics = asyncio.run(main())
    pieces = [c.choices[0].delta.content for c in chat if c.choices[0].delta.content]
    assert len(pieces) > 2  # sentence by sentence, not all at the end
    assert "".join(pieces) == plain.choices[0].message.content
    assert chat[0].choices[0].delta.role == "assistant" and chat[0].object == "chat.completion.chunk"
    assert chat[-1].choices[0].finish_reason == "stop" and all(c.id == chat[0].id for c in chat)
    assert all(c.choices[0].finish_reason is None for c in chat[:-1])
    assert text[-1].choices[0].finish_reason == "length" and text[0].object == "text_completion"
    assert "".join(c.choices[0].text for c in text) == f"explained {SENTENCES}"
    assert "mafioso_time_to_first_token_seconds_count 3.0" in metrics


def test_include_usage_ends_an_openai_stream_with_the_requests_usage():
    """What the openai client asks with stream_options={"include_usage": True}: usage null on every chunk, then
    one chunk with no choices and the usage a plain answer reports (it was ignored: no usage at all)."""
    worker, cfg = _streaming_worker()

    async def main():
        async with serving(worker, cfg) as url:
            client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
            messages = [{"role": "user", "content": SENTENCES}]
            plain = await client.chat.completions.create(model="mafioso", messages=messages)
            chat = [chunk async for chunk in await client.chat.completions.create(
                model="mafioso", messages=messages, stream=True, stream_options={"include_usage": True})]
            text = [chunk async for chunk in await client.completions.create(
                model="mafioso", prompt=SENTENCES, stream=True, max_tokens=4, stream_options={"include_usage": True})]
            without = [chunk async for chunk in await client.completions.create(
                model="mafioso", prompt=SENTENCES, stream=True, max_tokens=4)]
            with pytest.raises(openai.BadRequestError, match="only allowed with 'stream': true"):
                await client.chat.completions.create(model="mafioso", messages=messages,
                                                     stream_options={"include_usage": True})
            return plain, chat, text, without

    plain, chat, text, without = asyncio.run(main())
    assert chat[-1].choices == [] and chat[-1].usage == plain.usage
    assert chat[-2].choices[0].finish_reason == "stop" and all(c.usage is None for c in chat[:-1])
    assert text[-1].choices == [] and text[-1].usage.completion_tokens == 4
    assert text[-1].usage.total_tokens == text[-1].usage.prompt_tokens + 4 > 4
    assert without[-1].choices[0].finish_reason == "length" and all(c.usage is None for c in without)


def test_explain_streams_deltas_then_the_whole_answer():
    worker, cfg = _streaming_worker()

    async def main():
        async with serving(worker, cfg) as url, aiohttp.ClientSession() as http:
            async with http.post(url + "/v1/explain", json={"code": SENTENCES, "stream": True}) as r:
                return r.status, r.headers["Content-Type"], await r.text()

    status, kind, body = asyncio.run(main())
    events = [line[6:] for line in body.splitlines() if line.startswith("data: ")]
    assert (status, kind, events[-1]) == (200, "text/event-stream", "[DONE]")
    parsed = [json.loads(event) for event in events[:-1]]
    *deltas, last = parsed
    assert len(deltas) > 1 and last["done"] and not last["replaced"]
    assert "".join(d["delta"] for d in deltas) + last["delta"] == last["explanation"] == f"explained {SENTENCES}"
    assert len(last["answer_id"]) == 32 and last["finished"]


def test_a_client_that_hangs_up_mid_stream_frees_the_slot_at_once():
    engine = FakeEngine(tokens=10_000, token_delay=0.01)
    cfg = worker_config()
    worker = Worker(engine, cfg)

    async def main():
        async with serving(worker, cfg) as url:
            async with aiohttp.ClientSession() as http:
                async with http.post(url + "/v1/explain", json={"code": "\n".join(SENTENCES * 50),
                                                                "stream": True}) as r:
                    await r.content.readline()  # the first event: it is decoding
            for _ in range(200):  # connection closed: the engine must stop that row
                if engine.cancelled:
                    break
                await asyncio.sleep(0.01)
            decoded = engine.decoded
            await asyncio.sleep(0.1)
            return decoded, engine.decoded

    before, after = asyncio.run(main())
    assert engine.cancelled == 1 and before == after < 10_000
    assert worker.registry.get_sample_value("mafioso_cancelled_total", {"stage": "decoding"}) == 1


def test_when_the_final_check_changes_sent_text_the_last_event_carries_the_whole_answer():
    class Rewriting(FakeEngine):
        def text_so_far(self, code, ids):  # what was shown differs from the final answer ("explained <code>")
            return "Shown early. " * len(ids)

    cfg = worker_config()
    worker = Worker(Rewriting(tokens=8, token_delay=0.1), cfg)

    async def main():
        async with serving(worker, cfg) as url:
            client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
            chat = [chunk async for chunk in await client.chat.completions.create(
                model="mafioso", messages=[{"role": "user", "content": "x = 1"}], stream=True)]
            async with aiohttp.ClientSession() as http, \
                    http.post(url + "/v1/explain", json={"code": "x = 1", "stream": True}) as r:
                events = [json.loads(line[6:]) for line in (await r.text()).splitlines()
                          if line.startswith("data: {")]
            return chat, events

    chat, events = asyncio.run(main())
    assert any(c.choices[0].delta.content for c in chat[:-1])  # something was shown early
    assert chat[-1].model_extra["mafioso"] == {"replaced": True, "text": "explained x = 1"}
    assert events[-1]["replaced"] and events[-1]["explanation"] == "explained x = 1" and events[-1]["delta"] == ""
