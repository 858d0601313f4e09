"""mafioso.worker.client.WorkerClient in ``openai`` mode against a loopback vLLM stand-in
(tests/worker/vllm_stand_in.py, which passes tests/worker/test_openai_contract.py), and through ``mafioso explain`` /
``mafioso serve``."""

from __future__ import annotations

import asyncio

import pytest

from mafioso import prompts
from mafioso.prompts.lines import line
from mafioso.worker.client import WorkerClient
from mafioso.bot.serve import _start_explainer, load_settings
from mafioso.worker.service import Worker
from mafioso.cli import main, make_parser
from mafioso.core.errors import ConfigError, InputRejected, RequestError, WorkerBusy
from tests.worker.helpers import FakeEngine, serving, worker_config
from tests.worker.vllm_stand_in import VllmStandIn

CODE = "def add(a, b):\n    return a + b"


pytestmark = pytest.mark.usefixtures("no_chat_env")  # the developer's variables and .env stay out


def _explain(server: VllmStandIn, code: str = CODE, request: str | None = "why?", **options):
    async def run():
        async with WorkerClient(server.url, "vllm-key", api="openai", **options) as client:
            return await client.explain(code, request)

    return run()


def test_openai_mode_sends_the_rendered_prompt_greedy_with_the_section_stop():
    async def run():
        async with VllmStandIn(answer=" Listen up, pal: it adds a and b. Capisce?\n### REQUEST: more") as server:
            answer = await _explain(server, max_tokens=120)
            return answer, server.requests

    answer, requests = asyncio.run(run())
    (body, headers), = requests
    assert body == {"model": "mafioso", "prompt": prompts.render_prompt(CODE, "why?"), "max_tokens": 120,
                    "temperature": 0, "stop": ["###"]}
    assert headers["Authorization"] == "Bearer vllm-key"
    assert answer.text == "Listen up, pal: it adds a and b. Capisce?"  # cut at ### (by the server), stripped
    assert answer.finished and not answer.code_leak and answer.tokens == 9


def test_openai_mode_finishes_the_text_like_our_engine(monkeypatch):
    """A server that ignores ``stop`` still gives our answer: the client cuts at ###, strips and scrubs code
    (mafioso.core.postcheck.finish, as the engine does)."""
    async def run():
        async with VllmStandIn(answer="  It adds them, pal.\n```python\nprint(add(1, 2))\n```\n### EXTRA\nx = 1",
                               finish_reason="length") as server:
            async with WorkerClient(server.url, api="openai") as client:
                plain = client.completion_body
                monkeypatch.setattr(client, "completion_body", lambda *a: {**plain(*a), "stop": []})
                return await client.explain(CODE)

    answer = asyncio.run(run())
    assert answer.text == "It adds them, pal."
    assert answer.code_leak and not answer.finished  # finish_reason "length": cut at max_tokens


def test_an_answer_of_only_code_says_so_in_character():
    async def run():
        async with VllmStandIn(answer="```python\nx = 1\n```") as server:
            return await _explain(server)

    assert asyncio.run(run()).text == line("off_the_record")


def test_the_model_name_is_configurable_and_an_unknown_one_is_in_character(caplog):
    async def run():
        async with VllmStandIn() as server:
            with pytest.raises(RequestError) as error:
                await _explain(server, model="mafioso-noir")
            return error.value, server.requests[0][0]["model"]

    error, sent = asyncio.run(run())
    assert sent == "mafioso-noir"
    assert str(error) == line("wrong_name")
    assert "MAFIOSO_WORKER_MODEL" in caplog.text and "does not exist" in caplog.text  # the detail is logged


def test_a_prompt_past_the_context_is_the_too_large_refusal():
    async def run():
        async with VllmStandIn(max_model_len=500) as server:
            with pytest.raises(InputRejected) as error:
                await _explain(server)
            return error.value

    assert asyncio.run(run()).reason == "too_large"


def test_bad_input_is_refused_here_before_any_request():
    async def run():
        async with VllmStandIn() as server:
            for code, reason in (("  \n", "empty"), ("x" * 7000, "too_large")):
                with pytest.raises(InputRejected) as error:
                    await _explain(server, code=code)
                assert error.value.reason == reason
            return server.requests

    assert asyncio.run(run()) == []


def test_a_busy_server_is_busy_in_character():
    async def run():
        async with VllmStandIn(status=503) as server:
            with pytest.raises(WorkerBusy) as error:
                await _explain(server)
            return str(error.value)

    assert "pal" in asyncio.run(run())


def test_our_worker_refuses_openai_mode_so_it_keeps_the_mafioso_api(caplog):
    """Our worker takes code, not a prompt, on /v1/completions and refuses a whole rendered prompt: a
    worker_api=openai client pointed at it fails loudly instead of explaining the rendered prompt."""
    cfg = worker_config()

    async def run():
        async with serving(Worker(FakeEngine(), cfg), cfg) as url:
            async with WorkerClient(url) as client:
                ours = await client.explain("x = 1")
            async with WorkerClient(url, api="openai") as client:
                with pytest.raises(RequestError):
                    await client.explain("x = 1")
        return ours

    assert asyncio.run(run()).text == "explained x = 1"
    assert "MAFIOSO_WORKER_API=mafioso" in caplog.text  # the operator's log says what to change


def test_mafioso_explain_through_a_vllm_style_server(tmp_path, capsys):
    script = tmp_path / "s.py"
    script.write_text(CODE + "\n")

    async def run():
        async with VllmStandIn() as server:
            status = await asyncio.to_thread(main, ["explain", str(script), "--request", "why?", "--worker-url",
                                                    server.url, "--worker-api", "openai", "--max-new-tokens", "64"])
            return status, server.requests

    status, requests = asyncio.run(run())
    assert status == 0
    assert capsys.readouterr().out.strip() == "Listen up, pal: it adds two numbers. Capisce?"
    assert requests[0][0]["prompt"] == prompts.render_prompt(CODE, "why?")
    assert requests[0][0]["max_tokens"] == 64


def test_serve_builds_an_openai_client_from_env_and_flags(monkeypatch):
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-1")
    monkeypatch.setenv("MAFIOSO_WORKER_API", "openai")
    monkeypatch.setenv("MAFIOSO_WORKER_MODEL", "mafioso-noir")
    settings = load_settings(make_parser().parse_args(["serve", "--worker-url", "http://vllm:8000"]))
    client = asyncio.run(_start_explainer(settings))
    assert (client.api, client.model, client.url) == ("openai", "mafioso-noir", "http://vllm:8000")
    assert client.max_tokens == settings.generation.max_new_tokens
    settings = load_settings(make_parser().parse_args(["serve", "--worker-url", "http://w:8000", "--worker-api",
                                                       "mafioso"]))
    assert settings.serve.worker_api == "mafioso"
    monkeypatch.setenv("MAFIOSO_WORKER_API", "grpc")
    with pytest.raises(ConfigError, match="MAFIOSO_WORKER_API"):
        load_settings(make_parser().parse_args(["serve"]))


def test_openai_mode_applies_the_claim_post_check_like_our_engines():
    """A vLLM answer gets the same claim post-check as our engines (mafioso.core.claim_check): the sentence the code
    contradicts is dropped, unless the setting is off."""
    answer = "`add` is a recursive little racket, pal. It returns `a` plus `b`, capisce?"

    async def run(**options):
        async with VllmStandIn(answer=answer) as server:
            return await _explain(server, **options)

    checked, unchecked = asyncio.run(run()), asyncio.run(run(drop_unsupported=False))
    assert (checked.text, checked.dropped) == ("It returns `a` plus `b`, capisce?", 1)
    assert (unchecked.text, unchecked.dropped) == (answer, 0)


def test_a_worker_that_does_not_stream_gives_its_whole_answer_as_one_event():
    """``stream()`` against a worker that ignores ``"stream": true`` (an older one) still answers; an error
    answer is still raised as that error."""
    from aiohttp import web

    from tests.helpers import serve_loopback

    async def explain(request: web.Request) -> web.Response:
        body = await request.json()
        if body["code"] == "busy":
            return web.json_response({"error": {"message": "all busy", "code": "busy"}}, status=503)
        return web.json_response({"explanation": "It adds, pal.", "tokens": 5, "latency_s": 0.1, "finished": True,
                                  "answer_id": "a1"})

    async def run():
        app = web.Application()
        app.router.add_post("/v1/explain", explain)
        runner, url = await serve_loopback(app)
        try:
            async with WorkerClient(url) as client:
                events = [event async for event in await client.stream(CODE)]
                with pytest.raises(WorkerBusy):
                    await client.stream("busy")
        finally:
            await runner.cleanup()
        return events

    (event,) = asyncio.run(run())
    assert event.answer.text == "It adds, pal." and event.answer.answer_id == "a1"
