"""Server-sent events for the worker's streamed answers (``"stream": true``; formats in docs/API.md).

Each endpoint's events are JSON objects on ``data:`` lines, ended by ``data: [DONE]``:

* ``/v1/chat/completions``: ``chat.completion.chunk`` objects, OpenAI's shape: a first chunk with
  ``delta.role``, then ``delta.content`` pieces, a last chunk with an empty ``delta`` and ``finish_reason``
  (``stop`` or ``length``);
* ``/v1/completions``: ``text_completion`` objects with ``choices[0].text`` pieces, the same last chunk;
* both, with ``"stream_options": {"include_usage": true}``: every chunk has ``"usage": null`` and one more chunk
  before ``[DONE]`` has ``"choices": []`` and the request's ``usage``, as OpenAI sends it;
* ``/v1/explain``: ``{"delta": "..."}`` events, then one ``{"done": true, ...}`` with the whole answer
  (``explanation``, ``answer_id``, ``tokens``, ``latency_s``, ``finished``, ``code_leak``, ``replaced``).

Text is shown sentence by sentence once the checks passed it (:mod:`mafioso.worker.token_stream`). When the
final post-check changes text already sent (rare), ``/v1/explain``'s last event says ``replaced: true`` and
its ``explanation`` is the text to show; the OpenAI endpoints cannot take a chunk back, so their last chunk
carries ``"mafioso": {"replaced": true, "text": <the whole answer>}`` (an extra field OpenAI clients ignore).

Errors before the first event are the usual JSON error responses; an error after it (a timeout) is one
``{"error": {...}}`` event, then ``[DONE]``. A client that hangs up cancels the handler (``handler_cancellation``)
and with it the request: the engine frees its slot at its next step.
"""

from __future__ import annotations

import json
import time

from aiohttp import web

from mafioso.core.errors import RequestError, WorkerBusy, WorkerTimeout, WorkerUnavailable
from mafioso.prompts.lines import line
from mafioso.worker.service import AnswerStream, StreamEvent

__all__ = ["stream_chat", "stream_completion", "stream_explain"]

_DONE = b"data: [DONE]\n\n"
#: An error event's ``code``, as the JSON errors name them (a client raises the same exception again).
_CODES = {WorkerTimeout: "timeout", WorkerBusy: "busy", WorkerUnavailable: "unavailable"}


async def _open(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    return response


async def _send(response: web.StreamResponse, event: dict) -> None:
    await response.write(b"data: " + json.dumps(event, ensure_ascii=False).encode() + b"\n\n")


async def _relay(request: web.Request, stream: AnswerStream, chunk, last) -> web.StreamResponse:
    """Send ``chunk(delta)`` per text delta and ``last(event)`` for the final one, then ``[DONE]``; an error
    mid-stream becomes an error event."""
    response = await _open(request)
    try:
        async for event in stream:
            if event.answer is None:
                await _send(response, chunk(event.delta))
            else:
                for data in last(event):
                    await _send(response, data)
    except RequestError as exc:  # busy, timeout, unavailable, failed: in character, no internals
        code = next((code for kind, code in _CODES.items() if isinstance(exc, kind)), "server_error")
        await _send(response, {"error": {"message": str(exc), "type": code, "code": code}})
    except (ConnectionResetError, OSError):
        return response  # the client left; the stream's cleanup cancelled the request
    except Exception:  # noqa: BLE001 - headers are sent: the error must be an event, not a broken stream
        failed = line("failed", stream.persona)
        await _send(response, {"error": {"message": failed, "type": "server_error", "code": None}})
        raise
    finally:
        await stream.aclose()
    await response.write(_DONE)
    await response.write_eof()
    return response


def _finish_reason(event: StreamEvent) -> str:
    return "stop" if event.answer.finished else "length"


def _replaced(event: StreamEvent) -> dict:
    return {"mafioso": {"replaced": True, "text": event.delta}} if event.replaced else {}


def _usage(head: dict, prompt_tokens: int | None, event: StreamEvent):
    """OpenAI's usage chunk (``include_usage``: ``prompt_tokens`` is not None), after the finishing one."""
    if prompt_tokens is not None:
        done = event.answer.tokens
        yield {**head, "choices": [], "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": done,
                                                "total_tokens": prompt_tokens + done}}


def _head(kind: str, prefix: str, stream: AnswerStream, model: str, prompt_tokens: int | None) -> dict:
    """The fields every chunk of an OpenAI stream repeats (``usage: null`` when a usage chunk ends it)."""
    return {"id": f"{prefix}-{stream.answer_id}", "object": kind, "created": int(time.time()), "model": model,
            **({"usage": None} if prompt_tokens is not None else {})}


async def stream_explain(request: web.Request, stream: AnswerStream) -> web.StreamResponse:
    """/v1/explain's events."""
    def last(event: StreamEvent):
        a = event.answer
        yield {"done": True, "delta": "" if event.replaced else event.delta, "replaced": event.replaced,
               "explanation": a.text, "answer_id": a.answer_id, "tokens": a.tokens, "latency_s": a.latency_s,
               "finished": a.finished, "code_leak": a.code_leak, "dropped": a.dropped}

    return await _relay(request, stream, lambda delta: {"delta": delta}, last)


async def stream_chat(request: web.Request, stream: AnswerStream, model: str,
                      prompt_tokens: int | None = None) -> web.StreamResponse:
    """/v1/chat/completions' ``chat.completion.chunk`` events; a usage chunk last when ``prompt_tokens`` is given."""
    head = _head("chat.completion.chunk", "chatcmpl", stream, model, prompt_tokens)
    started = False

    def chunk(delta: dict, finish: str | None = None, **extra) -> dict:
        nonlocal started
        if not started:
            delta, started = {"role": "assistant", **delta}, True
        return {**head, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
                **extra}

    def last(event: StreamEvent):
        if event.delta and not event.replaced:
            yield chunk({"content": event.delta})
        yield chunk({} if started else {"content": ""}, _finish_reason(event), **_replaced(event))
        yield from _usage(head, prompt_tokens, event)

    return await _relay(request, stream, lambda delta: chunk({"content": delta}), last)


async def stream_completion(request: web.Request, stream: AnswerStream, model: str,
                            prompt_tokens: int | None = None) -> web.StreamResponse:
    """/v1/completions' ``text_completion`` events; a usage chunk last when ``prompt_tokens`` is given."""
    head = _head("text_completion", "cmpl", stream, model, prompt_tokens)

    def chunk(text: str, finish: str | None = None, **extra) -> dict:
        return {**head, "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}], **extra}

    def last(event: StreamEvent):
        if event.delta and not event.replaced:
            yield chunk(event.delta)
        yield chunk("", _finish_reason(event), **_replaced(event))
        yield from _usage(head, prompt_tokens, event)

    return await _relay(request, stream, chunk, last)
