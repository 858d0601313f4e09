"""The HTTP API on a real loopback socket: the openai client, limits, errors, metrics, auth, WorkerClient."""

import asyncio
import logging
import threading

import aiohttp
import openai
import pytest

from mafioso.worker.client import WorkerClient
from mafioso.worker.http_api import listen, make_app
from mafioso.worker.service import Worker
from mafioso.cli import main
from mafioso.core.errors import ConfigError, InputRejected, WorkerBusy, WorkerTimeout, WorkerUnavailable
from tests.worker.helpers import FakeEngine, serving, worker_config


def test_openai_client_gets_completions_chat_and_models(engine):
    cfg = worker_config()

    async def main():
        async with serving(Worker(engine, cfg), cfg) as url:
            client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
            completion = await client.completions.create(model="mafioso", prompt="print(1 + 1)")
            chat = await client.chat.completions.create(model="mafioso", messages=[
                {"role": "system", "content": "ignored"},
                {"role": "user", "content": "what's this?\n```python\nx = [1, 2]\n```"}])
            models = await client.models.list()
            await client.close()
            return completion, chat, models

    completion, chat, models = asyncio.run(main())
    assert completion.object == "text_completion" and completion.id.startswith("cmpl-")
    [choice] = completion.choices
    assert isinstance(choice.text, str) and choice.finish_reason in ("stop", "length")
    assert 1 <= completion.usage.completion_tokens <= 8 and completion.usage.prompt_tokens > 10
    assert chat.object == "chat.completion" and chat.choices[0].message.role == "assistant"
    assert isinstance(chat.choices[0].message.content, str)
    assert chat.choices[0].finish_reason in ("stop", "length")
    assert [m.id for m in models.data] == ["mafioso"]


def test_sixteen_concurrent_requests_are_batched(engine):
    cfg = worker_config()

    async def main():
        async with serving(Worker(engine, cfg), cfg) as url, aiohttp.ClientSession() as http:
            async def ask(i):
                async with http.post(f"{url}/v1/explain", json={"code": f"print({i})", "request": "why"}) as r:
                    return r.status, await r.json()

            answers = await asyncio.gather(*(ask(i) for i in range(16)))
            async with http.get(f"{url}/metrics") as r:
                return answers, r.status, await r.text()

    answers, status, metrics = asyncio.run(main())
    assert all(s == 200 and set(body) >= {"explanation", "tokens", "latency_s", "finished"} for s, body in answers)
    assert status == 200 and 'mafioso_requests_total{outcome="ok"} 16.0' in metrics
    assert "mafioso_loops_total 0.0" in metrics
    count = float(next(x for x in metrics.splitlines() if x.startswith("mafioso_batch_size_count")).split()[1])
    assert count < 16  # at least one batch held more than one request


def test_errors_are_json_with_the_right_status():
    gate = threading.Event()
    engine = FakeEngine(gate=gate)
    cfg = worker_config(max_batch_size=1, queue_size=1, max_input_chars=100)

    async def main():
        worker = Worker(engine, cfg)
        async with serving(worker, cfg) as url, aiohttp.ClientSession() as http:
            async def post(path, **kwargs):
                async with http.post(url + path, **kwargs) as r:
                    return r.status, r.headers, await r.json()

            results = {
                "bad_json": await post("/v1/explain", data=b"{not json", headers={"Content-Type": "application/json"}),
                "no_code": await post("/v1/explain", json={"request": "hi"}),
                "empty": await post("/v1/explain", json={"code": "  "}),
                "too_large": await post("/v1/explain", json={"code": "x" * 101}),
                "huge_body": await post("/v1/explain", data=b"x" * 200_000),
                "stream": await post("/v1/completions", json={"prompt": ["x", "y"], "stream": True}),
                # refused before the stream starts: a plain JSON error, not an event
                "stream_empty": await post("/v1/chat/completions", json={"messages": [
                    {"role": "user", "content": "  "}], "stream": True}),
                "no_user": await post("/v1/chat/completions", json={"messages": []}),
                # issue 19: both were plain-text 500s (RecursionError in the JSON parser; the tokenizer's
                # TypeError on a lone surrogate)
                # issue 19: fields the worker cannot honour were accepted and ignored
                "temperature": await post("/v1/completions", json={"prompt": "x", "temperature": 2.5}),
                "n": await post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}],
                                                              "n": 2}),
                "max_tokens_word": await post("/v1/completions", json={"prompt": "x", "n": "lots"}),
                "logprobs": await post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}],
                                                                     "logprobs": True}),
                "json_format": await post("/v1/chat/completions", json={
                    "messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}}),
                "tool_required": await post("/v1/chat/completions", json={
                    "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}],
                    "tool_choice": "required"}),
                "prompt_type": await post("/v1/completions", json={"prompt": 3}),
                "unknown_model": await post("/v1/completions", json={"prompt": "x", "model": "gpt-9"}),
                "deep_json": await post("/v1/explain", data=b"[" * 20_000 + b"]" * 20_000,
                                        headers={"Content-Type": "application/json"}),
                "surrogate": await post("/v1/explain", data=b'{"code": "print(\'\\ud800\')"}',
                                        headers={"Content-Type": "application/json"}),
            }
            running = asyncio.create_task(post("/v1/explain", json={"code": "running"}))
            await asyncio.to_thread(engine.started.wait, 5)
            queued = asyncio.create_task(post("/v1/explain", json={"code": "queued"}))
            while worker.queue_depth < 1:
                await asyncio.sleep(0.01)
            results["busy"] = await post("/v1/completions", json={"model": "mafioso", "prompt": "one too many"})
            gate.set()
            results["running"], results["queued"] = await running, await queued
            async with http.get(f"{url}/nowhere") as r:
                results["404"] = r.status, r.headers, await r.json()
            return results

    results = asyncio.run(main())
    expected = {"bad_json": 400, "no_code": 400, "empty": 400, "too_large": 413, "huge_body": 413,
                "stream": 400, "stream_empty": 400, "no_user": 400, "temperature": 400, "n": 400,
                "max_tokens_word": 400, "logprobs": 400, "json_format": 400, "tool_required": 400,
                "prompt_type": 400, "unknown_model": 404, "deep_json": 400, "surrogate": 400, "busy": 503,
                "running": 200, "queued": 200, "404": 404}
    assert {k: v[0] for k, v in results.items()} == expected
    for name, (status, _, body) in results.items():
        if status != 200:
            assert set(body["error"]) >= {"message", "type"}, name
    assert results["empty"][2]["error"]["code"] == "empty"
    assert results["surrogate"][2]["error"]["code"] == "binary"
    assert results["temperature"][2]["error"]["message"] == "'temperature' must be a number at least 0 and at most 2."
    assert "never JSON" in results["json_format"][2]["error"]["message"]  # these three were ignored
    assert results["unknown_model"][2]["error"]["code"] == "model_not_found"
    assert results["prompt_type"][2]["error"]["message"] == \
        "'prompt' must be a string or a non-empty list of strings."
    assert "envelope" in results["empty"][2]["error"]["message"]
    assert results["busy"][1]["Retry-After"] == "1"


def test_timeout_is_504_and_the_client_maps_errors_back():
    gate = threading.Event()
    engine = FakeEngine(gate=gate)
    cfg = worker_config(max_batch_size=1, queue_size=1, request_timeout=0.3, max_input_chars=100)

    async def main():
        worker = Worker(engine, cfg)
        async with serving(worker, cfg) as url:
            async with WorkerClient(url) as client:
                with pytest.raises(WorkerTimeout):
                    await client.explain("slow")
                with pytest.raises(InputRejected) as caught:
                    await client.explain("x" * 101)
                assert caught.value.reason == "too_large"
                with pytest.raises(InputRejected) as caught:
                    await client.explain("")
                assert caught.value.reason == "empty"
                waiting = asyncio.create_task(client.explain("waiting"))
                while worker.queue_depth < 1:
                    await asyncio.sleep(0.01)
                with pytest.raises(WorkerBusy):
                    await client.explain("busy")
                gate.set()
                await asyncio.gather(waiting, return_exceptions=True)
                worker.cfg.request_timeout = 5.0
                answer = await client.explain("fine")
            async with aiohttp.ClientSession() as http, http.get(f"{url}/healthz") as r:
                health = r.status
            await worker.stop()
            async with aiohttp.ClientSession() as http, http.get(f"{url}/healthz") as r:
                stopped = r.status
            async with WorkerClient(url) as client:
                with pytest.raises(WorkerUnavailable):
                    await client.explain("after stop")
        async with WorkerClient(url) as client:
            with pytest.raises(WorkerUnavailable, match="line's dead"):
                await client.explain("nobody home")
        return answer, health, stopped

    answer, health, stopped = asyncio.run(main())
    assert answer.text == "explained fine" and answer.finished
    assert (health, stopped) == (200, 503)


def test_bearer_token_is_enforced(fake_engine, caplog):
    cfg = worker_config(api_key="s3cret")
    caplog.set_level(logging.DEBUG)

    async def main():
        async with serving(Worker(fake_engine, cfg), cfg) as url, aiohttp.ClientSession() as http:
            statuses = {}
            for name, headers in [("none", {}), ("wrong", {"Authorization": "Bearer nope"}),
                                  ("right", {"Authorization": "Bearer s3cret"})]:
                async with http.get(f"{url}/v1/models", headers=headers) as r:
                    statuses[name] = r.status, await r.json()
            async with http.get(f"{url}/healthz") as r:
                statuses["healthz"] = r.status, await r.json()
            async with http.get(f"{url}/metrics") as r:
                statuses["metrics"] = r.status, None
            client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="s3cret", max_retries=0)
            chat = await client.chat.completions.create(model="mafioso", messages=[
                {"role": "user", "content": "x = 1"}])
            with pytest.raises(openai.AuthenticationError):
                await openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="bad", max_retries=0).models.list()
            async with WorkerClient(url, api_key="s3cret") as good, WorkerClient(url, api_key="bad") as bad:
                assert (await good.explain("y = 2")).text == "explained y = 2"
                with pytest.raises(WorkerUnavailable):
                    await bad.explain("y = 2")
            return statuses, chat

    statuses, chat = asyncio.run(main())
    assert statuses["none"][0] == statuses["wrong"][0] == 401
    assert statuses["none"][1]["error"]["type"] == "authentication_error"
    assert statuses["right"][0] == 200 and statuses["healthz"][0] == 200 and statuses["metrics"][0] == 401
    assert chat.choices[0].message.content == "explained x = 1"
    assert "s3cret" not in caplog.text and "y = 2" not in caplog.text  # no keys, no request bodies


def test_a_port_in_use_or_out_of_range_is_a_clear_error_before_the_model_loads(monkeypatch, capsys):
    held = listen("127.0.0.1", 0)
    port = held.getsockname()[1]
    try:
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}.*another --port"):
            listen("127.0.0.1", port)
        loaded = []
        monkeypatch.setattr("mafioso.worker.http_api.build_workers", lambda *a, **k: loaded.append(a))
        monkeypatch.setenv("MAFIOSO_PORT", str(port))
        assert main(["worker"]) == 2  # the CLI's own path: refused before any model is loaded
        assert loaded == [] and f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    finally:
        held.close()
    with pytest.raises(ConfigError, match="MAFIOSO_PORT must be a TCP port between 0 and 65535, not 99999"):
        worker_config(port=99999)


def test_openapi_document_describes_the_real_requests_and_answers():
    """Every POST route is in /openapi.json; real bodies the server accepts validate against its request schema,
    bodies it refuses do not, and its real answers validate against the response schemas (jsonschema)."""
    import jsonschema

    cfg = worker_config(api_key="k")
    good = {"/v1/explain": {"code": "x = 1", "request": "why?"},
            "/v1/completions": {"model": "mafioso", "prompt": ["a = 1", "b = 2"], "temperature": 0, "n": 1,
                                "logprobs": 0},
            "/v1/chat/completions": {"messages": [{"role": "user", "content": "```\nx = 1\n```\nwhy?"}],
                                     "stream": False, "tools": [{"type": "function"}], "tool_choice": "auto"}}
    bad = {"/v1/explain": {"code": 3}, "/v1/completions": {"prompt": "x", "top_p": 1.5},
           "/v1/chat/completions": {"messages": [], "n": 1}}

    async def main():
        worker = Worker(FakeEngine(), cfg)
        async with serving(worker, cfg) as url, aiohttp.ClientSession(
                headers={"Authorization": "Bearer k"}) as http:
            async with http.get(url + "/openapi.json") as r:
                document = await r.json()
            answers = {}
            for path in good:
                for body in (good[path], bad[path]):
                    async with http.post(url + path, json=body) as r:
                        answers[path, body is good[path]] = r.status, await r.json()
            return document, answers, worker

    document, answers, worker = asyncio.run(main())
    schemas = document["components"]["schemas"]
    posted = {route.resource.canonical for route in make_app(worker, cfg).router.routes() if route.method == "POST"}
    assert set(document["paths"]) == posted and document["security"] == [{"bearer": []}]
    for path in good:
        operation = document["paths"][path]["post"]
        request_schema = {**schemas[operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                                    .rsplit("/", 1)[1]], "components": document["components"]}
        jsonschema.validate(good[path], request_schema)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad[path], request_schema)
        status, answer = answers[path, True]
        assert status == 200
        jsonschema.validate(answer, operation["responses"]["200"]["content"]["application/json"]["schema"])
        status, refusal = answers[path, False]
        assert status == 400
        jsonschema.validate(refusal, {**schemas["Error"], "required": ["error"]})


def test_max_tokens_is_honoured_and_checked():
    """Issue 19 item 7: max_tokens was accepted and ignored ("lots" gave a 200)."""
    engine = FakeEngine(tokens=10, max_new_tokens=50)
    cfg = worker_config()

    async def main():
        async with serving(Worker(engine, cfg), cfg) as url, aiohttp.ClientSession() as http:
            async def post(path, body):
                async with http.post(url + path, json=body) as r:
                    return r.status, await r.json()

            chat = [{"role": "user", "content": "x = 1"}]
            return {
                "explain": await post("/v1/explain", {"code": "x = 1", "max_tokens": 4}),
                "completions": await post("/v1/completions", {"prompt": ["a", "b"], "max_tokens": 3}),
                "chat": await post("/v1/chat/completions", {"messages": chat, "max_tokens": 50}),
                "too_many": await post("/v1/chat/completions", {"messages": chat, "max_tokens": 51}),
                "huge": await post("/v1/chat/completions", {"messages": chat, "max_tokens": 4096}),
                "newer_name": await post("/v1/chat/completions", {"messages": chat, "max_completion_tokens": 7}),
                "newer_too_many": await post("/v1/chat/completions", {"messages": chat, "max_completion_tokens": 51}),
                "both": await post("/v1/chat/completions", {"messages": chat, "max_tokens": 7,
                                                            "max_completion_tokens": 8}),
                "zero": await post("/v1/explain", {"code": "x", "max_tokens": 0}),
                "word": await post("/v1/completions", {"prompt": "x", "max_tokens": "lots"}),
            }

    r = asyncio.run(main())
    assert r["explain"] == (200, {**r["explain"][1], "tokens": 4, "finished": False})
    assert [c["finish_reason"] for c in r["completions"][1]["choices"]] == ["length", "length"]
    assert r["completions"][1]["usage"]["completion_tokens"] == 6
    assert r["chat"][1]["choices"][0]["finish_reason"] == "stop" and r["chat"][1]["usage"]["completion_tokens"] == 10
    # a cap above the worker's longest answer is that answer's length (clients often send 4096): a 400 broke them
    assert r["too_many"][0] == 200 and r["too_many"][1]["choices"][0]["finish_reason"] == "stop"
    assert r["huge"][0] == 200 and max(c.max_tokens or 0 for c in engine.controls) == 50  # never past the worker's
    assert r["zero"][0] == r["word"][0] == 400
    # OpenAI's newer name for the chat limit is the same limit (it was ignored: a 10-token answer)
    assert r["newer_name"][1]["usage"]["completion_tokens"] == 7
    assert r["newer_name"][1]["choices"][0]["finish_reason"] == "length"
    assert r["newer_too_many"][0] == 200
    assert r["both"] == (400, {"error": {"message": "'max_tokens' and 'max_completion_tokens' are the same limit: "
                                                    "send one of them.", "type": "invalid_request_error",
                                         "code": "bad_request"}})
    assert r["word"][1]["error"]["message"] == "'max_tokens' must be an integer at least 1."


def test_a_client_that_hangs_up_stops_its_decoding():
    """Issue 19 item 6: 4 clients gone after 3 s still cost +357 tokens over ~70 s."""
    engine = FakeEngine(tokens=500, token_delay=0.01)
    cfg = worker_config()

    async def main():
        worker = Worker(engine, cfg)
        async with serving(worker, cfg) as url:
            timeout = aiohttp.ClientTimeout(total=0.3)
            async with aiohttp.ClientSession(timeout=timeout) as http:
                with pytest.raises(asyncio.TimeoutError):
                    async with http.post(f"{url}/v1/explain", json={"code": "long"}) as r:
                        await r.read()
            for _ in range(200):
                if engine.cancelled:
                    break
                await asyncio.sleep(0.01)
            engine.tokens = 3
            async with aiohttp.ClientSession() as http, http.post(f"{url}/v1/explain", json={"code": "x"}) as r:
                after = r.status
            return worker, after

    worker, after = asyncio.run(main())
    assert engine.cancelled == 1 and engine.decoded < 150
    assert worker.registry.get_sample_value("mafioso_cancelled_total", {"stage": "decoding"}) == 1
    assert worker.registry.get_sample_value("mafioso_requests_total", {"outcome": "cancelled"}) == 1
    assert after == 200


def test_a_prompt_list_that_fails_cancels_the_rest():
    """Issue 19 item 6: a 400-item prompt list got 503 in 0.15 s, yet 51,200 tokens were decoded."""
    engine = FakeEngine(tokens=500, token_delay=0.01)
    engine.continuous_slots = 4
    cfg = worker_config()

    async def main():
        worker = Worker(engine, cfg)
        async with serving(worker, cfg) as url, aiohttp.ClientSession() as http:
            async with http.post(f"{url}/v1/completions", json={"prompt": [f"c{i}" for i in range(40)]}) as r:
                status, body = r.status, await r.json()
            depth = worker.queue_depth
            for _ in range(200):
                if worker.rate.in_flight == 0:
                    break
                await asyncio.sleep(0.01)
            in_flight = worker.rate.in_flight
        return worker, status, body, depth, in_flight

    worker, status, body, depth, in_flight = asyncio.run(main())
    assert status == 503 and body["error"]["code"] == "busy"
    assert depth == 0 and in_flight == 0  # the queue emptied at once, the slots soon after
    assert engine.decoded < 4 * 100
    sample = worker.registry.get_sample_value
    assert sample("mafioso_refused_total", {"reason": "cold_start"}) == 1  # the rest never asked
    assert sample("mafioso_requests_total", {"outcome": "cancelled"}) == 8  # the 2 x 4 admitted ones


def test_the_real_engine_honours_max_tokens_through_the_api(engine):
    cfg = worker_config()

    async def main():
        async with serving(Worker(engine, cfg), cfg) as url:
            client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
            cut = await client.completions.create(model="mafioso", prompt=["print(1)", "x = 2"], max_tokens=3)
            generous = await client.chat.completions.create(model="mafioso", max_tokens=4096,
                                                            messages=[{"role": "user", "content": "x = 1"}])
            await client.close()
            return cut, generous

    cut, generous = asyncio.run(main())
    assert cut.usage.completion_tokens == 6 and [c.finish_reason for c in cut.choices] == ["length", "length"]
    # the worker's own limit (8 here) caps a larger one
    assert generous.usage.completion_tokens == 8 and generous.choices[0].finish_reason == "length"


def test_what_the_claim_post_check_dropped_travels_to_the_client_whole_and_streamed():
    from mafioso.worker.engine import Generation

    class Checked(FakeEngine):
        def generate(self, requests, controls=None):
            return [Generation(text="It adds, pal.", tokens=3, finished=True, dropped=2) for _ in requests]

    cfg = worker_config()

    async def main():
        worker = Worker(Checked(), cfg)
        async with serving(worker, cfg) as url:
            async with aiohttp.ClientSession() as http, http.post(f"{url}/v1/explain", json={"code": "x = 1"}) as r:
                body = await r.json()
            async with WorkerClient(url) as client:
                whole = await client.explain("x = 1")
                events = [event async for event in await client.stream("x = 1")]
        await worker.stop()
        return body, whole, events[-1].answer

    body, whole, streamed = asyncio.run(main())
    assert body["dropped"] == whole.dropped == streamed.dropped == 2


def test_a_follow_up_in_a_chat_is_answered_about_the_earlier_code():
    """A chat client sends the whole conversation: "is there a bug?" after the answer asks about the code before."""
    cfg = worker_config()
    messages = [{"role": "system", "content": "be nice"}, {"role": "user", "content": "```\nx = 1\n```"},
                {"role": "assistant", "content": "It sets x, pal."}, {"role": "user", "content": "is there a bug?"}]

    async def main():
        async with serving(Worker(FakeEngine(), cfg), cfg) as url, aiohttp.ClientSession() as http:
            async with http.post(url + "/v1/chat/completions", json={"messages": messages}) as r:
                return r.status, await r.json()

    status, body = asyncio.run(main())
    assert status == 200 and body["choices"][0]["message"]["content"] == "explained x = 1"


def test_stop_strings_reach_the_engine_and_cut_the_answer_whole_and_streamed():
    """OpenAI's ``stop`` was refused (a 400); clients that send one got nothing. The engine ends the row at a stop
    string (tests/worker/test_engine.py); the worker cuts the text before it, the streamed text too."""
    engine = FakeEngine()
    cfg = worker_config()

    async def main():
        async with serving(Worker(engine, cfg), cfg) as url:
            client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
            chat = await client.chat.completions.create(model="mafioso", stop=["= 1", "zzz"],
                                                        messages=[{"role": "user", "content": "x = 1"}])
            whole = await client.completions.create(model="mafioso", prompt="y = 2", stop="= 2")
            stream = await client.completions.create(model="mafioso", prompt="y = 2", stop="= 2", stream=True)
            streamed = "".join([chunk.choices[0].text async for chunk in stream if chunk.choices])
            await client.close()
            return chat, whole, streamed

    chat, whole, streamed = asyncio.run(main())
    assert chat.choices[0].message.content == "explained x " and chat.choices[0].finish_reason == "stop"
    assert whole.choices[0].text == streamed == "explained y "
    assert [c.stop for c in engine.controls] == [("= 1", "zzz"), ("= 2",), ("= 2",)]


def test_browser_pages_of_the_allowed_origins_may_call_the_api():
    """CORS (MAFIOSO_CORS_ORIGINS): a web chat UI calling the worker from a browser needs a preflight answer
    (before the key: browsers send none with it) and Access-Control-Allow-Origin on every answer, errors and
    streams too. Off by default; another page gets nothing it can read."""
    page = "https://chat.example.com"
    preflight = {"Origin": page, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "authorization, content-type"}

    async def run(origins: str):
        cfg = worker_config(api_key="k", cors_origins=origins)
        async with serving(Worker(FakeEngine(), cfg), cfg) as url, aiohttp.ClientSession() as http:
            seen = {}
            async with http.options(url + "/v1/chat/completions", headers=preflight) as r:
                seen["preflight"] = r.status, dict(r.headers)
            async with http.options(url + "/v1/chat/completions",
                                    headers={**preflight, "Origin": "https://evil.example"}) as r:
                seen["other page"] = r.status, dict(r.headers)
            keyed = {"Origin": page, "Authorization": "Bearer k"}
            async with http.post(url + "/v1/chat/completions", headers=keyed,
                                 json={"messages": [{"role": "user", "content": "x = 1"}], "stream": True}) as r:
                await r.read()
                seen["stream"] = r.status, dict(r.headers)
            async with http.get(url + "/v1/models", headers={"Origin": page}) as r:
                seen["no key"] = r.status, dict(r.headers)
            return seen

    on, star, off = (asyncio.run(run(origins)) for origins in (page, "*", ""))
    status, headers = on["preflight"]
    assert status == 204 and headers["Access-Control-Allow-Origin"] == page
    assert "POST" in headers["Access-Control-Allow-Methods"]
    assert headers["Access-Control-Allow-Headers"] == "authorization, content-type"
    assert on["other page"][0] == 403 and "Access-Control-Allow-Origin" not in on["other page"][1]
    for name in ("stream", "no key"):  # a 200 stream and a 401 alike
        assert on[name][1]["Access-Control-Allow-Origin"] == page and on[name][1]["Vary"] == "Origin"
    assert (on["stream"][0], on["no key"][0]) == (200, 401)
    assert star["preflight"][1]["Access-Control-Allow-Origin"] == "*" and star["other page"][0] == 204
    assert off["preflight"][0] in (401, 405) and all("Access-Control-Allow-Origin" not in h for _, h in off.values())
