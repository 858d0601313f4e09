"""An :class:`~mafioso.core.explanation.Explainer` that calls a remote worker over HTTP.

    async with WorkerClient("http://127.0.0.1:8000", api_key) as client:
        answer = await client.explain("print(1 + 1)")
    async with WorkerClient("http://vllm:8000", api="openai", model="mafioso", max_tokens=200) as client:
        answer = await client.explain("print(1 + 1)")     # vLLM / SGLang: the prompt is rendered here

Two protocols (``MAFIOSO_WORKER_API``). ``mafioso`` posts the code to a ``mafioso worker``'s ``/v1/explain``;
the worker renders the prompt, decodes and post-checks. ``openai`` is for a server that knows nothing of
Mafioso (``vllm serve BASE --enable-lora --lora-modules mafioso=ADAPTER``, SGLang): the client checks the
input (mafioso.core.guard), renders the prompt (``prompts.render_prompt``), posts it to ``/v1/completions`` with
greedy decoding and ``stop: ["###"]``, and finishes the text as our engine does (mafioso.core.postcheck.finish). Our
own worker takes the code, not a prompt, on /v1/completions (a whole rendered prompt is a 400): point ``openai``
mode at vLLM, ``mafioso`` mode at a ``mafioso worker``.

HTTP errors come back as the same exceptions the in-process worker raises: 400/413 → InputRejected,
503 → WorkerBusy (or WorkerUnavailable while the worker shuts down), 504 → WorkerTimeout, connection
errors → WorkerUnavailable. Messages are the worker's in-character ones; in ``openai`` mode the server's
messages are logged and users get ours (404 unknown model, 400 past the context, 429/503 busy).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import aiohttp

from mafioso import prompts
from mafioso.core import guard
from mafioso.core.claim_check import drop_unsupported
from mafioso.core.explanation import Explanation
from mafioso.core.postcheck import finish
from mafioso.worker.service import StreamEvent
from mafioso.core.config import DEFAULT_MODEL_NAME, WORKER_APIS, WorkerConfig
from mafioso.core.errors import InputRejected, RequestError, WorkerBusy, WorkerTimeout, WorkerUnavailable
from mafioso.prompts.lines import line

__all__ = ["WorkerClient"]

log = logging.getLogger(__name__)

#: A vLLM 400 that means the prompt does not fit the model's context (its wording since 0.4).
_CONTEXT_WORDS = ("context length", "maximum context", "too long")


class WorkerClient:
    """Explains code by calling a worker's ``POST /v1/explain`` (``api="mafioso"``) or an OpenAI-style server's
    ``POST /v1/completions`` with the rendered prompt (``api="openai"``: ``model``, ``max_tokens``)."""

    def __init__(self, url: str, api_key: str = "", timeout: float = 150.0, *, api: str = "mafioso",
                 model: str = "mafioso", max_tokens: int = 200,
                 max_input_chars: int = WorkerConfig.max_input_chars, drop_unsupported: bool = True,
                 persona: str = prompts.DEFAULT_PERSONA, prompt_format: int = prompts.PROMPT_FORMAT):
        if api not in WORKER_APIS:
            raise ValueError(f"api must be one of {WORKER_APIS}, not {api!r}")
        self.url = url.rstrip("/")
        self.api, self.model, self.max_tokens, self.max_input_chars = api, model, max_tokens, max_input_chars
        self.drop_unsupported = drop_unsupported  # the claim post-check, as our engines apply it (openai mode)
        self.persona = persona  # whose instruction the prompt carries (openai mode) and whose lines it says
        self.prompt_format = prompt_format  # openai mode: the format of the adapter the server runs
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> WorkerClient:
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session (a later call opens a new one)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def say(self, situation: str) -> str:
        """This client's persona's line for ``situation`` (mafioso.prompts.lines)."""
        return line(situation, self.persona)

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout)
        return self._session

    async def explain(self, code: str, request: str | None = None) -> Explanation:
        """Explain ``code`` on the worker; raises the RequestError the worker answered with."""
        if self.api == "openai":
            return await self._complete(code, request)
        data = await self._post("/v1/explain", {"code": code, "request": request, **self._model_field()},
                                "explanation")
        return _explanation(data)

    async def stream(self, code: str, request: str | None = None) -> _RemoteStream:
        """Explain ``code`` as :class:`mafioso.worker.service.StreamEvent` s from the worker's ``/v1/explain``
        stream (``"stream": true``); returns once the worker answered, raising like :meth:`explain` when it
        refused. In ``openai`` mode the answer is checked whole here, so it comes as one last event."""
        if self.api == "openai":
            return _RemoteStream(self, None, await self._complete(code, request))
        try:
            response = await self._open().post(f"{self.url}/v1/explain",
                                               json={"code": code, "request": request, "stream": True,
                                                     **self._model_field()})
        except asyncio.TimeoutError:
            raise WorkerTimeout(self.say("slow")) from None
        except aiohttp.ClientError as exc:
            log.warning("cannot reach the worker at %s: %s", self.url, type(exc).__name__)
            raise WorkerUnavailable(self.say("unreachable")) from None
        if response.status != 200 or not response.content_type.startswith("text/event-stream"):
            async with response:  # an error, or a worker that does not stream: its whole answer as one event
                return _RemoteStream(self, None, _explanation(await self._json(response, "explanation")))
        return _RemoteStream(self, response)

    async def rate(self, answer_id: str, rating: int) -> None:
        """Rate an answer this worker gave (``POST /v1/feedback``); raises :class:`mafioso.core.feedback.UnknownAnswer`
        or the RequestError the worker answered with."""
        from mafioso.core.feedback import UnknownAnswer

        try:
            async with self._open().post(f"{self.url}/v1/feedback",
                                         json={"answer_id": answer_id, "rating": rating}) as response:
                if response.status == 200:
                    return
                try:
                    error = (await response.json()).get("error") or {}
                except (aiohttp.ContentTypeError, ValueError):
                    error = {}
        except asyncio.TimeoutError:
            raise WorkerTimeout(self.say("slow")) from None
        except aiohttp.ClientError as exc:
            log.warning("cannot reach the worker at %s: %s", self.url, type(exc).__name__)
            raise WorkerUnavailable(self.say("unreachable")) from None
        if response.status == 404 and error.get("code") == "answer_not_found":
            raise UnknownAnswer(answer_id)
        raise RequestError(error.get("message") or f"the worker answered HTTP {response.status}")

    def _model_field(self) -> dict:
        """``/v1/explain``'s ``model``: sent only for another adapter than the default, so older workers work."""
        return {} if self.model == DEFAULT_MODEL_NAME else {"model": self.model}

    def completion_body(self, code: str, request: str | None = None) -> dict:
        """The ``/v1/completions`` body of ``openai`` mode: our rendered prompt, decoded the way the adapter
        was tuned and evaluated (greedy, stopping at the next ``###`` section)."""
        prompt = prompts.render_prompt(code, request, self.persona, self.prompt_format)
        return {"model": self.model, "prompt": prompt, "max_tokens": self.max_tokens,
                "temperature": 0, "stop": [prompts.SECTION_MARKER]}

    async def _complete(self, code: str, request: str | None) -> Explanation:
        """``openai`` mode: the server knows no guard and no post-check, so both run here."""
        code = guard.check(code, request, max_chars=self.max_input_chars, persona=self.persona)
        started = time.monotonic()
        data = await self._post("/v1/completions", self.completion_body(code, request), "choices")
        try:
            choice = data["choices"][0]
            raw = choice["text"]
        except (IndexError, KeyError, TypeError):
            log.error("the server at %s answered a completion without choices[0].text", self.url)
            raise RequestError(self.say("failed")) from None
        text, leaked = finish(raw, self.persona)
        dropped = 0
        if self.drop_unsupported:
            kept, dropped = drop_unsupported(code, text)
            text = (kept or self.say("nothing_sure")) if dropped else text
        tokens = (data.get("usage") or {}).get("completion_tokens") or 0
        return Explanation(text=text, tokens=tokens, latency_s=round(time.monotonic() - started, 4),
                           finished=choice.get("finish_reason") != "length", code_leak=leaked, dropped=dropped)

    async def _post(self, path: str, body: dict, expect: str) -> dict:
        try:
            async with self._open().post(f"{self.url}{path}", json=body) as response:
                return await self._json(response, expect)
        except asyncio.TimeoutError:
            raise WorkerTimeout(self.say("slow")) from None
        except aiohttp.ClientError as exc:
            log.warning("cannot reach the worker at %s: %s", self.url, type(exc).__name__)
            raise WorkerUnavailable(self.say("unreachable")) from None

    async def _json(self, response: aiohttp.ClientResponse, expect: str) -> dict:
        try:
            data = await response.json()
        except (aiohttp.ContentTypeError, ValueError):
            data = {}
        if not isinstance(data, dict):
            data = {}
        if response.status == 200 and expect in data:
            return data
        # {"error": {...}} (OpenAI, vLLM since 0.10, our worker) or the flat {"object": "error", ...} of older vLLM
        error = data.get("error")
        if not isinstance(error, dict):
            error = data if data.get("object") == "error" else {}
        message = error.get("message") or f"the worker answered HTTP {response.status}"
        if self.api == "openai":
            self._openai_error(response.status, error, message)
        if response.status in (400, 413) and error.get("code") in ("empty", "too_large", "binary"):
            raise InputRejected(error["code"], message)
        if response.status == 413:
            raise InputRejected("too_large", message)
        if response.status == 401:
            log.error("the worker refused the API key: check MAFIOSO_API_KEY")
            raise WorkerUnavailable(self.say("rejected_key"))
        if response.status == 503:
            raise WorkerUnavailable(message) if error.get("code") == "unavailable" else WorkerBusy(message)
        if response.status == 504:
            raise WorkerTimeout(message)
        log.error("the worker answered HTTP %d (%s)", response.status, error.get("type"))
        raise RequestError(message)

    def _openai_error(self, status: int, error: dict, message: str) -> None:
        """An OpenAI-style server's error as ours: its messages are not in character, so they are logged and
        users get ours. A bad key falls through to the common rule."""
        if status == 404:
            log.error("the server at %s does not serve the model %r (%s): set MAFIOSO_WORKER_MODEL to a name "
                      "its /v1/models lists", self.url, self.model, message)
            raise RequestError(self.say("wrong_name"))
        if status == 400 and any(word in message.lower() for word in _CONTEXT_WORDS):
            raise guard.refusal("too_large", self.persona)
        if status in (429, 503):
            raise WorkerBusy(self.say("busy"))
        if status == 504:
            raise WorkerTimeout(self.say("slow"))
        if status != 401:
            log.error("the server at %s answered HTTP %d: %s", self.url, status, message)
            raise RequestError(self.say("failed"))


#: An error event's code (mafioso.worker.http_stream) -> the exception the in-process worker raises.
_STREAM_ERRORS = {"timeout": WorkerTimeout, "busy": WorkerBusy, "unavailable": WorkerUnavailable}


def _explanation(data: dict) -> Explanation:
    """The Explanation in a ``/v1/explain`` answer's JSON."""
    return Explanation(text=data["explanation"], tokens=data["tokens"], latency_s=data["latency_s"],
                       finished=data["finished"], code_leak=data.get("code_leak", False),
                       dropped=data.get("dropped", 0),
                       answer_id=data.get("answer_id", ""))


class _RemoteStream:
    """The events of one ``/v1/explain`` stream (or, with ``answer``, just that answer as its last event)."""

    def __init__(self, client: WorkerClient, response: aiohttp.ClientResponse | None,
                 answer: Explanation | None = None):
        self._say, self._response, self._answer = client.say, response, answer

    def __aiter__(self):
        return self._events()

    async def aclose(self) -> None:
        """Hang up: the worker cancels the request."""
        if self._response is not None:
            self._response.close()

    async def _events(self):
        if self._response is None:
            yield StreamEvent(self._answer.text, self._answer)
            return
        try:
            async for line in self._response.content:
                if not line.startswith(b"data: ") or line.strip() == b"data: [DONE]":
                    continue
                event = json.loads(line[6:])
                if "error" in event:
                    error = event["error"]
                    kind = _STREAM_ERRORS.get(error.get("code"), RequestError)
                    raise kind(error.get("message") or self._say("failed"))
                if not event.get("done"):
                    yield StreamEvent(event["delta"])
                    continue
                answer = Explanation(text=event["explanation"], tokens=event["tokens"], latency_s=event["latency_s"],
                                     finished=event["finished"], code_leak=event.get("code_leak", False),
                                     dropped=event.get("dropped", 0),
                                     answer_id=event.get("answer_id", ""))
                yield StreamEvent(answer.text if event["replaced"] else event["delta"], answer, event["replaced"])
                return
        except asyncio.TimeoutError:
            raise WorkerTimeout(self._say("slow")) from None
        except aiohttp.ClientError as exc:
            log.warning("the worker's stream broke off: %s", type(exc).__name__)
            raise WorkerUnavailable(self._say("unreachable")) from None
        finally:
            self._response.close()
        raise RequestError(self._say("failed"))  # the stream ended without its answer
