"""``mafioso worker``: the HTTP API in front of the generation worker.

    mafioso worker --host 127.0.0.1 --port 8000 --adapter out/adapter     # bf16 fast path on CUDA

    POST /v1/explain            {"code", "request"?} → {"explanation", "answer_id", "tokens", "latency_s", ...}
    POST /v1/feedback           {"answer_id", "rating": 1 | -1} → {"answer_id", "rating"}: a user's 👍/👎
    POST /v1/completions        OpenAI-compatible; the prompt is the code
    POST /v1/chat/completions   OpenAI-compatible; the last user message is the code (``` fences optional, a
                                fence left open runs to the end, the text around them is the request), or a
                                follow-up question about an earlier message's code
    GET  /v1/models             "mafioso", and each persona of MAFIOSO_ADAPTERS (chosen by "model")
    GET  /v1/models/{model}     one of them (404 for another name)
    GET  /openapi.json          this API as an OpenAPI 3.1 document (from the bodies the handlers check)
    GET  /healthz               liveness (never needs the API key)
    GET  /metrics               Prometheus text

Flags override ``MAFIOSO_*`` variables (and ``.env``). With ``MAFIOSO_API_KEY`` set every endpoint but
/healthz needs ``Authorization: Bearer <key>``; ``MAFIOSO_CORS_ORIGINS`` lets web pages call it from a browser.
Errors are JSON ``{"error": {"message", "type", "code"}}``:
400 bad JSON or input, 401 key, 404 unknown model or answer id, 413 too large, 503 busy (with Retry-After) or shutting
down, 504 timeout. Request bodies and the key are never logged. OpenAI fields the worker cannot honour
(presence_penalty, frequency_penalty, logit_bias, logprobs, response_format, tool_choice) are accepted only at
their empty default; other values get a 400 that says so (``tools`` may be sent: none is ever called).
Answers are greedy unless a request sends a ``temperature`` above 0 (with ``top_p`` and ``seed``:
:mod:`mafioso.worker.sampling`) or the worker samples by default (``MAFIOSO_DO_SAMPLE``); then ``n`` (up to
``MAX_CHOICES``) asks for several answers to a prompt. ``stop`` strings end an answer, cut before the first.
``max_tokens`` (chat's ``max_completion_tokens`` is the same limit) is honoured per request, up to the worker's
``max_new_tokens`` (a larger cap is that one); an answer cut there has ``finish_reason: "length"``
(``finished: false``).
A stream's ``stream_options.include_usage`` ends it with OpenAI's usage chunk.

Every answer is recorded in the feedback store (core/feedback.py, ``MAFIOSO_FEEDBACK_DB``) under its
``answer_id``; the OpenAI endpoints' response ``id`` (``chatcmpl-<answer_id>``, ``cmpl-<answer_id>`` for one
prompt) names it too, and ``POST /v1/feedback`` takes either. ``/metrics`` counts the ratings per adapter.

``"stream": true`` answers with server-sent events (:mod:`mafioso.worker.http_stream`, docs/API.md).

A client that hangs up cancels its request (aiohttp's ``handler_cancellation``): it leaves the queue, or the
engine stops decoding it at the next step. A ``/v1/completions`` prompt list is answered whole or not at
all: when one prompt fails (busy, timeout, bad input) the others are cancelled at once.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import errno
import hmac
import json
import logging
import socket
import time
import uuid

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

import mafioso
from mafioso.worker.api_schema import BadRequest, Body, Param, openapi
from mafioso.worker.http_stream import stream_chat, stream_completion, stream_explain
from mafioso.core.feedback import FeedbackUnavailable, UnknownAnswer, open_store
from mafioso.prompts import is_rendered_prompt
from mafioso.prompts.followups import prose
from mafioso.prompts.fences import around, fenced_blocks
from mafioso.prompts.lines import line
from mafioso.core.settings import add_settings_arguments, load_settings
from mafioso.worker.runtime import build_workers
from mafioso.worker.sampling import Sampling
from mafioso.worker.service import Worker
from mafioso.core.config import DEFAULT_MODEL_NAME, WorkerConfig
from mafioso.core.errors import ConfigError, InputRejected, RequestError, WorkerBusy, WorkerTimeout, WorkerUnavailable

__all__ = ["MODEL_ID", "RUNNER_OPTIONS", "WORKER", "add_arguments", "chat_code", "listen", "make_app", "run",
           "split_fence"]

log = logging.getLogger(__name__)

MODEL_ID = DEFAULT_MODEL_NAME
WORKER = web.AppKey("worker", Worker)
#: More personas on this worker (MAFIOSO_ADAPTERS): model name -> its own Worker (engine, queue, admission)
PERSONAS = web.AppKey("personas", dict)
_KEYED = web.AppKey("keyed", bool)
_ORIGINS = web.AppKey("origins", frozenset)  # MAFIOSO_CORS_ORIGINS: pages that may call from a browser
_ROOTS = web.AppKey("roots", dict)  # persona name -> its adapter spec, for /v1/models
_VERSION = mafioso.__version__
_STARTED = int(time.time())
#: How the app is served: a handler is cancelled when its client disconnects (aiohttp stopped doing that by
#: default in 3.7), which cancels the request in the worker: no decoding for nobody.
RUNNER_OPTIONS = {"handler_cancellation": True}


class _UnknownModel(Exception):
    """The request names a model this worker does not serve (404, as OpenAI and vLLM answer)."""


class _SlowBody(Exception):
    """The body did not arrive within the request timeout (408): a client that stops mid-body holds nothing."""


def _error(status: int, message: str, kind: str, code: str | None = None, **headers) -> web.Response:
    body = {"error": {"message": message, "type": kind, "code": code}}
    return web.json_response(body, status=status, headers=headers or None)


@web.middleware
async def _errors(request: web.Request, handler) -> web.StreamResponse:
    """The one place errors become JSON responses; users get the in-character message, never internals."""
    try:
        return await handler(request)
    except BadRequest as exc:
        return _error(400, str(exc), "invalid_request_error", "bad_request")
    except _UnknownModel as exc:
        return _error(404, f"The model '{exc}' does not exist; GET /v1/models lists the ones this worker serves.",
                      "invalid_request_error", "model_not_found")
    except UnknownAnswer as exc:
        return _error(404, line("unknown_answer", _persona(request), answer_id=repr(exc.args[0])),
                      "invalid_request_error", "answer_not_found")
    except FeedbackUnavailable:
        return _error(503, line("ratings_closed", _persona(request)),
                      "unavailable", "feedback_off")
    except InputRejected as exc:
        return _error(413 if exc.reason == "too_large" else 400, str(exc), "invalid_request_error", exc.reason)
    except WorkerBusy as exc:
        return _error(503, str(exc), "server_busy", "busy", **{"Retry-After": str(exc.retry_after)})
    except WorkerTimeout as exc:
        return _error(504, str(exc), "timeout", "timeout")
    except WorkerUnavailable as exc:
        return _error(503, str(exc), "unavailable", "unavailable")
    except RequestError as exc:
        return _error(500, str(exc), "server_error", "server_error")
    except _SlowBody:
        return _error(408, line("too_slow", _persona(request)),
                      "invalid_request_error", "request_timeout")
    except web.HTTPRequestEntityTooLarge:
        return _error(413, line("too_large", _persona(request)), "invalid_request_error", "too_large")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(exc.status, exc.reason, "invalid_request_error", exc.reason.lower().replace(" ", "_"))
    except Exception:  # noqa: BLE001 - a bug must still be the API's JSON error, and the server keeps serving
        log.exception("unexpected error on %s %s", request.method, request.path)  # never the body
        return _error(500, line("failed", _persona(request)), "server_error", "server_error")


def _persona(request: web.Request) -> str | None:
    """The persona of this worker's own model, whose lines an error outside any one request is told in."""
    return getattr(request.app.get(WORKER), "persona", None)


def _cors(origins: frozenset[str]):
    """Browsers may call the API from the pages of ``origins`` (``*``: any page): a preflight (OPTIONS) is
    answered before the key is checked (browsers send none with it); every answer to an allowed page, errors and
    streams included, carries ``Access-Control-Allow-Origin`` (:func:`_allow_origin`, on response prepare)."""

    @web.middleware
    async def preflight(request: web.Request, handler) -> web.StreamResponse:
        if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
            return await handler(request)
        if _allowed(origins, request.headers.get("Origin", "")) is None:
            return _error(403, "This page's origin may not call the API (MAFIOSO_CORS_ORIGINS).",
                          "invalid_request_error", "origin_not_allowed")
        return web.Response(status=204, headers={
            "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
            "Access-Control-Allow-Headers": request.headers.get("Access-Control-Request-Headers",
                                                                "Authorization, Content-Type"),
            "Access-Control-Max-Age": "600"})

    return preflight


def _allowed(origins: frozenset[str], origin: str) -> str | None:
    """What ``Access-Control-Allow-Origin`` says to a request from ``origin`` (None: nothing, not allowed)."""
    if not origin:
        return None
    return "*" if "*" in origins else origin if origin.rstrip("/") in origins else None


async def _allow_origin(request: web.Request, response: web.StreamResponse) -> None:
    allowed = _allowed(request.app[_ORIGINS], request.headers.get("Origin", ""))
    if allowed is not None:
        response.headers["Access-Control-Allow-Origin"] = allowed
        response.headers["Vary"] = "Origin"


def _auth(api_key: str):
    expected = f"Bearer {api_key}".encode()

    @web.middleware
    async def check_key(request: web.Request, handler) -> web.StreamResponse:
        if request.path != "/healthz":
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return _error(401, line("wrong_key", _persona(request)),
                              "authentication_error", "invalid_api_key", **{"WWW-Authenticate": "Bearer"})
        return await handler(request)

    return check_key


async def _body(request: web.Request) -> dict:
    try:
        async with asyncio.timeout(request.app[WORKER].cfg.request_timeout):
            text = await request.text()
    except TimeoutError:
        raise _SlowBody() from None
    except LookupError:  # Content-Type: application/json; charset=<no such codec>
        raise BadRequest(line("unknown_charset", _persona(request))) from None
    except UnicodeDecodeError:
        raise BadRequest(line("not_json", _persona(request))) from None
    try:
        body = json.loads(text)
    except json.JSONDecodeError:
        raise BadRequest(line("not_json", _persona(request))) from None
    except ValueError:  # valid JSON, but an integer past Python's 4,300-digit conversion limit
        raise BadRequest("A number in the body has too many digits.") from None
    except RecursionError:  # thousands of nested brackets: valid JSON shape, but no request of ours nests
        raise BadRequest(line("too_deep", _persona(request))) from None
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.")
    return body


async def _parse(request: web.Request, spec: Body) -> dict:
    """The request's body checked against ``spec``; a named model must be ours, ``stream_options`` only with a
    stream, as OpenAI answers. ``max_tokens`` (or chat's ``max_completion_tokens``, the same limit) is a cap:
    one above the worker's longest answer (clients often send 4096) is that answer's length, as an answer may
    always end before its cap; cut there, it still ends with finish_reason 'length'."""
    values = spec.parse(await _body(request))
    if values.get("max_completion_tokens") is not None:
        if values["max_tokens"] not in (None, values["max_completion_tokens"]):
            raise BadRequest("'max_tokens' and 'max_completion_tokens' are the same limit: send one of them.")
        values["max_tokens"] = values["max_completion_tokens"]
    worker = _chosen(request, values)
    most = worker.max_new_tokens
    if most is not None and values.get("max_tokens") is not None:
        values["max_tokens"] = min(values["max_tokens"], most)
    options = values.get("stream_options")
    if options is not None:
        if not values.get("stream"):
            raise BadRequest("'stream_options' is only allowed with 'stream': true.")
        if not isinstance(options.get("include_usage", False), bool):
            raise BadRequest("'stream_options.include_usage' must be true or false.")
    stop = values.get("stop")
    values["stop"] = (stop,) if isinstance(stop, str) else tuple(stop or ())
    values["sampling"] = _sampling(values, worker.engine.gen)
    values["samplings"] = _draws(values, worker.engine.gen)
    return values


def _sampling(values: dict, gen) -> Sampling | None:
    """The request's decoding: the worker's default (``gen``) with the sampling fields it sent (None: none)."""
    sent = {name: values[name] for name in ("temperature", "top_p", "seed") if values.get(name) is not None}
    return dataclasses.replace(Sampling.default(gen), **sent) if sent else None


def _draws(values: dict, gen) -> list[Sampling | None]:
    """One sampling per answer to a prompt: ``n`` of them, each its own draw (a seed gives answer i seed + i); more
    than one needs a temperature above 0, and no stream."""
    n = values.get("n") or 1
    if n == 1:
        return [values["sampling"]]
    if values.get("stream"):
        raise BadRequest("A stream carries one answer: leave 'n' out (or send 1) with 'stream': true.")
    drawn = values["sampling"] or Sampling.default(gen)
    if drawn.greedy:
        raise BadRequest("'n' above 1 needs a 'temperature' above 0: greedy answers to one prompt are all the same.")
    return [dataclasses.replace(drawn, seed=None if drawn.seed is None else drawn.seed + i) for i in range(n)]


def _streamed_usage(worker: Worker, body: dict, code: str, req: str | None = None) -> int | None:
    """The prompt's token count when the stream's last chunk must carry the usage (``include_usage``)."""
    wanted = (body.get("stream_options") or {}).get("include_usage")
    return worker.prompt_tokens(code, req) if wanted else None


def _chosen(request: web.Request, body: dict) -> Worker:
    """The worker of the body's ``model`` (none: this worker's own); an unknown name is a 404, as in vLLM."""
    model = body.get("model")
    if model in (None, MODEL_ID):
        return request.app[WORKER]
    if model not in request.app[PERSONAS]:
        raise _UnknownModel(model)
    return request.app[PERSONAS][model]


# ------------------------------------------------------------------------------------- request bodies

_TEXT = {"type": "string"}
MAX_STOPS = 4  # OpenAI's limit on stop strings
#: A stop string's length: each step decodes a tail as long as the longest (an answer is ~1,000 characters)
_STOP_TEXT = {"type": "string", "minLength": 1, "maxLength": 200}
MAX_CHOICES = 8  # OpenAI's n: answers to one prompt, each a request of the worker's queue
_MAX_TOKENS = Param("max_tokens", {"type": "integer", "minimum": 1},
                   "longest answer in tokens (default and most: the worker's max_new_tokens; a larger cap "
                   "is that one); an answer cut there has finish_reason 'length'")
_STREAM = Param("stream", {"type": "boolean"}, "stream the answer as server-sent events (docs/API.md); a stream "
                "answers one prompt")
#: How the answer picks its tokens (mafioso.worker.sampling); a field left out is the worker's default decoding.
_SAMPLING = (
    Param("temperature", {"type": "number", "minimum": 0, "maximum": 2}, "0 decodes greedily (the worker's default "
          "unless MAFIOSO_DO_SAMPLE: the way its adapter was tuned and evaluated); above 0 samples at that "
          "temperature, at the plain decode path's speed"),
    Param("top_p", {"type": "number", "minimum": 0, "maximum": 1}, "when sampling: draw from the fewest most likely "
          "tokens whose probability reaches top_p (default: the worker's, 1 unless MAFIOSO_DO_SAMPLE)"),
    Param("seed", {"type": "integer"}, "when sampling: the same seed and request give the same answer on this "
          "worker (default: a fresh draw each time)"),
)
_STREAM_OPTIONS = Param("stream_options", {"type": "object"}, "with stream only: {'include_usage': true} adds a last "
                        "chunk with the request's usage and no choices (the other chunks carry usage: null)")
#: The fields of both OpenAI endpoints. Those the worker cannot honour (penalties, logit_bias, logprobs,
#: response_format, tool_choice) are accepted only at their default value: anything else is a 400 that says so.
_OPENAI_FIELDS = (
    _MAX_TOKENS,
    Param("model", _TEXT, f"the model: '{MODEL_ID}' or a persona of GET /v1/models (another name is a 404)"),
    *_SAMPLING,
    Param("n", {"type": "integer", "minimum": 1, "maximum": MAX_CHOICES}, f"answers per prompt (at most "
          f"{MAX_CHOICES}), each its own draw: above 1 needs a temperature above 0, and no stream"),
    _STREAM,
    _STREAM_OPTIONS,
    Param("stop", {"oneOf": [_STOP_TEXT, {"type": "array", "items": _STOP_TEXT, "maxItems": MAX_STOPS}]},
          f"up to {MAX_STOPS} strings that end the answer, cut before the first (finish_reason 'stop')"),
    *(Param(name, {"type": "number", "minimum": -2, "maximum": 2}, f"OpenAI's {name}: 0 only", only=(0,),
            why="the worker applies its own repetition penalty (MAFIOSO_REPETITION_PENALTY), the one its adapter "
                "was evaluated with") for name in ("presence_penalty", "frequency_penalty")),
    Param("logit_bias", {"type": "object"}, "token biases: none", only=({},),
          why="the worker's decoding rules and grounded decoding decide which tokens an answer may take"),
    Param("logprobs", {"oneOf": [{"type": "boolean"}, {"type": "integer", "minimum": 0}]}, "token log-probabilities: "
          "none", only=(False, 0), why="this worker returns no log-probabilities"),
    Param("response_format", {"type": "object"}, "the answer's format: text only", only=({"type": "text"},),
          why="the answer is prose in character, never JSON"),
    Param("tool_choice", {"oneOf": [_TEXT, {"type": "object"}]}, "whether a tool must be called: 'none' or 'auto' "
          "(tools sent are never called: the model explains code)", only=("none", "auto"),
          why="this model explains code and calls no tools, so none can be required"),
)
EXPLAIN = Body("ExplainRequest", (
    Param("code", _TEXT, "the Python code to explain", required=True),
    Param("request", _TEXT, "what the user asked about it (default: 'Explain this code.')"),
    Param("model", _TEXT, f"the persona's model: '{MODEL_ID}' (default) or another of GET /v1/models (a 404 "
                          "otherwise)"),
    _MAX_TOKENS,
    *_SAMPLING,
    _STREAM,
))
COMPLETIONS = Body("CompletionRequest", (
    Param("prompt", {"oneOf": [_TEXT, {"type": "array", "items": _TEXT, "minItems": 1}]},
          "the code to explain, or a list of pieces of code (one answer each)", required=True),
    *_OPENAI_FIELDS,
))
_MESSAGE = {"type": "object", "properties": {"role": _TEXT, "content": {"oneOf": [_TEXT, {"type": "array"}]}}}
CHAT = Body("ChatCompletionRequest", (
    Param("messages", {"type": "array", "items": _MESSAGE, "minItems": 1},
          "the conversation; the last user message holds the code, or a follow-up question (no fence, not Python) "
          "asks about the latest earlier user message's code (``` fenced blocks, a fence left open runs to "
          "the end; the text around them is the request)", required=True),
    Param("max_completion_tokens", {"type": "integer", "minimum": 1}, "OpenAI's newer name of max_tokens (the "
          "same limit; sending both with different values is a 400)"),
    *_OPENAI_FIELDS,
))
FEEDBACK = Body("FeedbackRequest", (
    Param("answer_id", _TEXT, "the answer rated: /v1/explain's answer_id or an OpenAI response's id", required=True),
    Param("rating", {"type": "integer"}, "1 (👍) or -1 (👎); the same client's later rating replaces it",
          required=True, only=(1, -1), why="a rating is 1 (thumbs up) or -1 (thumbs down)"),
))
_USAGE = {"type": "object", "properties": {k: {"type": "integer"} for k in (
    "prompt_tokens", "completion_tokens", "total_tokens")}}
_ANSWERS = {
    "/v1/explain": (EXPLAIN, {"type": "object", "properties": {
        "explanation": _TEXT, "answer_id": _TEXT, "tokens": {"type": "integer"}, "latency_s": {"type": "number"},
        "finished": {"type": "boolean"}, "code_leak": {"type": "boolean"}, "dropped": {"type": "integer"}}},
        "explain code in character"),
    "/v1/completions": (COMPLETIONS, {"type": "object", "properties": {
        "id": _TEXT, "object": {"const": "text_completion"}, "created": {"type": "integer"}, "model": _TEXT,
        "usage": _USAGE, "choices": {"type": "array", "items": {"type": "object", "properties": {
            "index": {"type": "integer"}, "text": _TEXT, "finish_reason": {"enum": ["stop", "length"]}}}}}},
        "OpenAI text completions: each prompt is a piece of code"),
    "/v1/chat/completions": (CHAT, {"type": "object", "properties": {
        "id": _TEXT, "object": {"const": "chat.completion"}, "created": {"type": "integer"}, "model": _TEXT,
        "usage": _USAGE, "choices": {"type": "array", "items": {"type": "object", "properties": {
            "index": {"type": "integer"}, "finish_reason": {"enum": ["stop", "length"]},
            "message": {"type": "object", "properties": {"role": {"const": "assistant"}, "content": _TEXT}}}}}}},
        "OpenAI chat completions: the last user message holds the code"),
    "/v1/feedback": (FEEDBACK, {"type": "object", "properties": {"answer_id": _TEXT, "rating": {"type": "integer"}}},
                     "rate an answer (404 for an unknown answer_id, 503 when feedback is off)"),
}


def split_fence(message: str) -> tuple[str, str | None]:
    """(code, request) from a chat message: its fenced blocks (mafioso.prompts.fences: a fence left open runs to the
    end) are the code, joined by a blank line, and the text around them the request; without a block the whole
    message is the code."""
    blocks = fenced_blocks(message)
    if not blocks:
        return message, None
    return "\n\n".join(b.code for b in blocks), around(message, blocks)


def chat_code(messages: list[str]) -> tuple[str, str | None]:
    """(code, request) from a conversation's user messages: the last one's (:func:`split_fence`), unless it is a
    follow-up: a last message of words, not code (:func:`mafioso.prompts.followups.prose`: "is there a bug?",
    "and the second function?") asks about the code of the latest earlier message that has some (fenced or
    not; earlier follow-ups are passed over), as a chat client's follow-up question does; it is then the
    request."""
    last = messages[-1]
    if prose(last):
        for earlier in reversed(messages[:-1]):
            if earlier.strip() and not prose(earlier):
                return split_fence(earlier)[0], " ".join(last.split()) or None
    return split_fence(last)


def _text(content) -> str:
    """A message's text: a string, or the text parts of a list of content parts."""
    if isinstance(content, list):  # content parts: keep the text ones
        content = "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    if not isinstance(content, str):
        raise BadRequest("a user message's 'content' must be a string or a list of text parts.")
    return content


def _usage(worker: Worker, pairs: list[tuple[str, str | None]], answers) -> dict:
    prompt = sum(worker.prompt_tokens(code, req) for code, req in pairs)
    completion = sum(a.tokens for a in answers)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _finish_reason(answer) -> str:
    return "stop" if answer.finished else "length"


async def _all_or_none(worker: Worker, jobs: list[tuple[str, str | None, Sampling | None]],
                       max_tokens: int | None, stop: tuple[str, ...]) -> list:
    """Every (code, request, sampling) job's answer, or the first failure with the other requests cancelled at
    once (their queue places and slots freed): nobody reads the rest of a list whose request failed."""
    tasks: list[asyncio.Task] = []
    try:
        for code, req, sampling in jobs:
            tasks.append(asyncio.ensure_future(worker.explain(code, req, max_tokens=max_tokens, sampling=sampling,
                                                              stop=stop)))
            await asyncio.sleep(0)  # it runs up to its admission: a refused one ends the list here
            if tasks[-1].done() and tasks[-1].exception() is not None:
                break
        return await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()  # finished ones ignore it
        await asyncio.gather(*tasks, return_exceptions=True)  # settled: out of the queue before we answer


# ------------------------------------------------------------------------------------------ handlers


async def explain(request: web.Request) -> web.Response:
    """POST /v1/explain: the project's own endpoint."""
    body = await _parse(request, EXPLAIN)
    worker = _chosen(request, body)
    if body["stream"]:
        return await stream_explain(request, await worker.stream(
            body["code"], body["request"], max_tokens=body["max_tokens"], sampling=body["sampling"]))
    answer = await worker.explain(body["code"], body["request"], max_tokens=body["max_tokens"],
                                  sampling=body["sampling"])
    return web.json_response({"explanation": answer.text, "answer_id": answer.answer_id, "tokens": answer.tokens,
                              "latency_s": answer.latency_s, "finished": answer.finished,
                              "code_leak": answer.code_leak, "dropped": answer.dropped})


async def feedback(request: web.Request) -> web.Response:
    """POST /v1/feedback: a 👍 (1) or 👎 (-1) for an answer this worker gave."""
    body = await _parse(request, FEEDBACK)
    answer_id = body["answer_id"].removeprefix("chatcmpl-").removeprefix("cmpl-")
    await request.app[WORKER].rate_answer(answer_id, body["rating"], user="api")
    return web.json_response({"answer_id": answer_id, "rating": body["rating"]})


async def completions(request: web.Request) -> web.Response:
    """POST /v1/completions: OpenAI text completions; each prompt is a piece of code."""
    body = await _parse(request, COMPLETIONS)
    prompt = body["prompt"]
    pairs = [(code, None) for code in (prompt if isinstance(prompt, list) else [prompt])]
    if any(is_rendered_prompt(code) for code, _ in pairs):  # a client for vLLM (MAFIOSO_WORKER_API=openai)
        raise BadRequest("The prompt is a whole rendered Mafioso prompt; this worker takes the code itself and "
                         "renders the prompt: point a Mafioso client at it with MAFIOSO_WORKER_API=mafioso.")
    worker, model = _chosen(request, body), body.get("model") or MODEL_ID
    if body["stream"]:
        if len(pairs) != 1:
            raise BadRequest("A stream answers one prompt; send the pieces of code one request each.")
        code = pairs[0][0]
        stream = await worker.stream(code, max_tokens=body["max_tokens"], sampling=body["sampling"],
                                     stop=body["stop"])
        return await stream_completion(request, stream, model, _streamed_usage(worker, body, code))
    answers = await _all_or_none(worker, [(code, None, sampling) for code, _ in pairs for sampling in
                                          body["samplings"]], body["max_tokens"], body["stop"])
    return web.json_response({
        "id": f"cmpl-{answers[0].answer_id if len(answers) == 1 else uuid.uuid4().hex}",  # one answer: ratable
        "object": "text_completion", "created": int(time.time()),
        "model": model, "usage": _usage(worker, pairs, answers),
        "choices": [{"index": i, "text": a.text, "logprobs": None, "finish_reason": _finish_reason(a)}
                    for i, a in enumerate(answers)],
    })


async def chat_completions(request: web.Request) -> web.Response:
    """POST /v1/chat/completions: OpenAI chat; the last user message holds the code."""
    body = await _parse(request, CHAT)
    messages = body["messages"]
    users = [m for m in messages if m.get("role") == "user"]
    if not users:
        raise BadRequest("'messages' must hold at least one user message with the code.")
    code, req = chat_code([_text(m.get("content")) for m in users])
    worker, model = _chosen(request, body), body.get("model") or MODEL_ID
    if body["stream"]:
        stream = await worker.stream(code, req, max_tokens=body["max_tokens"], sampling=body["sampling"],
                                     stop=body["stop"])
        return await stream_chat(request, stream, model, _streamed_usage(worker, body, code, req))
    answers = await _all_or_none(worker, [(code, req, sampling) for sampling in body["samplings"]],
                                 body["max_tokens"], body["stop"])
    return web.json_response({
        "id": f"chatcmpl-{answers[0].answer_id if len(answers) == 1 else uuid.uuid4().hex}",  # one: ratable
        "object": "chat.completion", "created": int(time.time()),
        "model": model, "usage": _usage(worker, [(code, req)], answers),
        "choices": [{"index": i, "message": {"role": "assistant", "content": answer.text},
                     "logprobs": None, "finish_reason": _finish_reason(answer)} for i, answer in enumerate(answers)],
    })


def _model_cards(request: web.Request) -> list[dict]:
    """This worker's own model, then each persona's, with ``parent`` = this worker's model as vLLM lists a LoRA
    module (``root``: its adapter)."""
    return [{"id": MODEL_ID, "object": "model", "created": _STARTED, "owned_by": "mafioso"},
            *({"id": name, "object": "model", "created": _STARTED, "owned_by": "mafioso", "parent": MODEL_ID,
               "root": spec} for name, spec in request.app[_ROOTS].items())]


async def models(request: web.Request) -> web.Response:
    """GET /v1/models: every model this worker serves (:func:`_model_cards`)."""
    return web.json_response({"object": "list", "data": _model_cards(request)})


async def model_card(request: web.Request) -> web.Response:
    """GET /v1/models/{model}: one model's card (the openai client's ``models.retrieve``); another name is a 404."""
    name = request.match_info["model"]
    card = next((card for card in _model_cards(request) if card["id"] == name), None)
    if card is None:
        raise _UnknownModel(name)
    return web.json_response(card)


async def openapi_document(request: web.Request) -> web.Response:
    """GET /openapi.json: this API's OpenAPI 3.1 document, generated from the bodies the handlers validate with."""
    return web.json_response(openapi(_ANSWERS, title="Mafioso worker", version=_VERSION,
                                     keyed=bool(request.app[_KEYED])))


async def healthz(request: web.Request) -> web.Response:
    """GET /healthz: 200 while the worker takes requests, 503 while it is stopped or draining."""
    worker = request.app[WORKER]
    status = "ok" if worker.accepting else "unavailable"
    return web.json_response({"status": status, "queue_depth": worker.queue_depth},
                             status=200 if worker.accepting else 503)


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics: the worker's registry in Prometheus text format."""
    data = generate_latest(request.app[WORKER].registry)
    return web.Response(body=data, headers={"Content-Type": CONTENT_TYPE_LATEST})


# ------------------------------------------------------------------------------------------- the app


def make_app(worker: Worker, cfg: WorkerConfig, *, manage_worker: bool = True,
             personas: dict[str, Worker] | None = None) -> web.Application:
    """The aiohttp application; with ``manage_worker`` it starts the worker (and each of ``personas``: more
    models by name, MAFIOSO_ADAPTERS) and drains them on shutdown."""
    origins = cfg.allowed_origins()
    middlewares = ([_cors(origins)] if origins else []) + [_errors] + ([_auth(cfg.api_key)] if cfg.api_key else [])
    # JSON may spell one character as \\uXXXX: leave room so the guard, not the socket, says "too large".
    app = web.Application(middlewares=middlewares, client_max_size=6 * cfg.max_input_chars + 65536)
    app[WORKER] = worker
    app[PERSONAS] = dict(personas or {})
    app[_ROOTS] = {name: cfg.more_adapters().get(name, name) for name in app[PERSONAS]}
    app[_KEYED] = bool(cfg.api_key)
    app[_ORIGINS] = origins
    if origins:
        app.on_response_prepare.append(_allow_origin)
    app.router.add_post("/v1/explain", explain)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/feedback", feedback)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/v1/models/{model}", model_card)
    app.router.add_get("/openapi.json", openapi_document)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    if manage_worker:
        async def start(app: web.Application) -> None:
            for each in (app[WORKER], *app[PERSONAS].values()):
                await each.start()

        async def drain(app: web.Application) -> None:
            await asyncio.gather(*(each.stop(drain=True) for each in (app[WORKER], *app[PERSONAS].values())))

        app.on_startup.append(start)
        app.on_shutdown.append(drain)
    return app


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``mafioso worker``: every worker and generation setting (the API key only from env)."""
    add_settings_arguments(parser, skip=("api_key",))


def run(args: argparse.Namespace) -> int:
    """Load the model, then serve until interrupted (SIGINT/SIGTERM drain the queue first)."""
    cfg, gen = load_settings(args)
    if not cfg.api_key and cfg.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s without MAFIOSO_API_KEY: anyone who can reach it can use it", cfg.host)
    sock = listen(cfg.host, cfg.port)  # before the model loads: a busy port is known in a second, not minutes
    store = open_store(cfg)
    # one merged copy of the base per persona (~0.5 GB for Gemma 3 270M in bf16), each with its own queue
    workers = build_workers(cfg, gen, feedback=store)
    worker = workers.pop(DEFAULT_MODEL_NAME)
    web.run_app(make_app(worker, cfg, personas=workers), sock=sock, print=lambda text: log.info("%s", text), **RUNNER_OPTIONS)
    return 0


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` for the server, or a ConfigError that says why it cannot be."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror} (MAFIOSO_HOST / --host)") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        hint = " (another worker running? pick another --port)" if exc.errno == errno.EADDRINUSE else ""
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}{hint}") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock
