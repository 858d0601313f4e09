"""The wire contract of an OpenAI-style server as vLLM speaks it, run against our worker over loopback.

What ``vllm serve BASE --enable-lora --lora-modules mafioso=ADAPTER`` answers, read from vLLM's
``vllm/entrypoints/openai/protocol.py`` (vllm-project/vllm, commit 0052bed36509c7a5a2d8e48265334e40cf2f5a0e,
the v0.10 line; ``ErrorResponse`` is ``{"error": ErrorInfo}`` there, a flat ``{"object": "error", ...}``
before 0.10):

- ``GET /v1/models`` → ``ModelList {object: "list", data: [ModelCard]}``; a card has ``id``, ``object:
  "model"``, ``created`` (int), ``owned_by`` (str); vLLM adds ``root``, ``parent`` (the base, for a LoRA
  module), ``max_model_len`` and ``permission``.
- ``POST /v1/completions`` → ``CompletionResponse {id, object: "text_completion", created, model, choices:
  [{index, text, logprobs, finish_reason, stop_reason}], usage: {prompt_tokens, completion_tokens,
  total_tokens}}``.
- ``POST /v1/chat/completions`` → ``ChatCompletionResponse {id, object: "chat.completion", created, model,
  choices: [{index, message: {role: "assistant", content}, logprobs, finish_reason}], usage}``.
- ``stream: true`` → ``text/event-stream`` of ``data: <chunk JSON>`` lines, ``object`` ``text_completion``
  (completions) or ``chat.completion.chunk``, ending with ``data: [DONE]``.
- an unknown ``model`` → HTTP 404 with ``{"error": {"message", "type", "code"}}`` (vLLM's ``code`` is the
  status, 404; OpenAI's and ours the string ``model_not_found``).

Only what a client may rely on is pinned: the fields above, their types, and nothing of vLLM's extras. The
same checks run against tests/worker/vllm_stand_in.py, so the stand-in the client tests use passes the contract
too. Requests carry only fields our worker honours (it refuses ``logprobs`` and a JSON ``response_format``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import aiohttp
import pytest

from mafioso.worker.service import Worker
from tests.worker.helpers import FakeEngine, serving, worker_config
from tests.worker.vllm_stand_in import VllmStandIn

MODEL = "mafioso"
FINISH_REASONS = ("stop", "length")


@contextlib.asynccontextmanager
async def _our_worker():
    cfg = worker_config()
    async with serving(Worker(FakeEngine(), cfg), cfg) as url:
        yield url


@contextlib.asynccontextmanager
async def _stand_in():
    async with VllmStandIn() as server:
        yield server.url


SERVERS = {"mafioso worker": _our_worker, "vllm stand-in": _stand_in}


def _call(server: str, method: str, path: str, body: dict | None = None) -> tuple[int, str, str]:
    """(status, content type, body text) of one request to ``server`` on loopback."""
    async def run():
        async with SERVERS[server]() as url, aiohttp.ClientSession() as session:
            async with session.request(method, url + path, json=body) as response:
                return response.status, response.content_type, await response.text()

    return asyncio.run(run())


def _usage(usage: dict) -> None:
    assert all(isinstance(usage[k], int) for k in ("prompt_tokens", "completion_tokens", "total_tokens"))
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def _common(body: dict, kind: str) -> None:
    assert body["object"] == kind
    assert isinstance(body["id"], str) and body["id"]
    assert isinstance(body["created"], int)
    assert isinstance(body["model"], str)
    assert isinstance(body["choices"], list) and body["choices"]


@pytest.fixture(params=list(SERVERS))
def server(request) -> str:
    return request.param


def test_models_lists_model_cards(server):
    status, kind, text = _call(server, "GET", "/v1/models")
    assert (status, kind) == (200, "application/json")
    body = json.loads(text)
    assert body["object"] == "list"
    for card in body["data"]:
        assert card["object"] == "model"
        assert isinstance(card["id"], str) and isinstance(card["owned_by"], str)
        assert isinstance(card["created"], int)
        assert isinstance(card.get("root"), (str, type(None))) and isinstance(card.get("parent"), (str, type(None)))
    assert MODEL in [card["id"] for card in body["data"]]


def test_completions(server):
    status, kind, text = _call(server, "POST", "/v1/completions",
                               {"model": MODEL, "prompt": "x = 1", "max_tokens": 16, "temperature": 0})
    assert (status, kind) == (200, "application/json")
    body = json.loads(text)
    _common(body, "text_completion")
    for index, choice in enumerate(body["choices"]):
        assert choice["index"] == index
        assert isinstance(choice["text"], str) and choice["text"]
        assert choice["finish_reason"] in FINISH_REASONS
    _usage(body["usage"])


def test_chat_completions(server):
    status, kind, text = _call(server, "POST", "/v1/chat/completions", {
        "model": MODEL, "max_tokens": 16, "temperature": 0,
        "messages": [{"role": "user", "content": "What does this do?\n```python\nx = 1\n```"}]})
    assert (status, kind) == (200, "application/json")
    body = json.loads(text)
    _common(body, "chat.completion")
    choice = body["choices"][0]
    assert choice["index"] == 0 and choice["finish_reason"] in FINISH_REASONS
    assert choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str) and choice["message"]["content"]
    _usage(body["usage"])


@pytest.mark.parametrize("path, body", [
    ("/v1/completions", {"prompt": "x = 1"}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "x = 1"}]}),
])
def test_an_unknown_model_is_a_404_error_object(server, path, body):
    status, kind, text = _call(server, "POST", path, {**body, "model": "no-such-persona"})
    assert (status, kind) == (404, "application/json")
    error = json.loads(text)["error"]
    assert isinstance(error["message"], str) and "no-such-persona" in error["message"]
    assert isinstance(error["type"], str)
    assert error["code"] in (404, "model_not_found")


def _events(text: str) -> list[str]:
    return [line[len("data: "):] for line in text.splitlines() if line.startswith("data: ")]


def _streamed(server: str) -> tuple[int, str, str]:
    return _call(server, "POST", "/v1/completions",
                 {"model": MODEL, "prompt": "x = 1", "max_tokens": 16, "temperature": 0, "stream": True})


def _check_stream(status: int, kind: str, text: str) -> None:
    assert (status, kind) == (200, "text/event-stream")
    events = _events(text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert chunks and all(chunk["object"] == "text_completion" for chunk in chunks)
    assert all(isinstance(choice["text"], str) for chunk in chunks for choice in chunk["choices"])
    assert chunks[-1]["choices"][0]["finish_reason"] in FINISH_REASONS


def test_the_stand_in_streams_chunks_ending_with_done():
    _check_stream(*_streamed("vllm stand-in"))


def test_our_worker_streams_chunks_ending_with_done():
    _check_stream(*_streamed("mafioso worker"))
