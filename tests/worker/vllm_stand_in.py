"""A loopback stand-in for a vLLM OpenAI-compatible server, for the worker client and its contract tests."""

from __future__ import annotations

import json

from tests.helpers import serve_loopback


class VllmStandIn:
    """A loopback stand-in for ``vllm serve BASE --enable-lora --lora-modules mafioso=ADAPTER`` (the shapes of
    vllm/entrypoints/openai/protocol.py, vllm-project/vllm commit 0052bed3): /v1/models lists the base and the
    LoRA module (``root`` / ``parent``), /v1/completions and /v1/chat/completions answer ``answer`` cut at the
    request's ``stop`` strings (vLLM leaves the stop string out), stream as ``data:`` chunks ending with
    ``data: [DONE]``, an unknown model is a 404 ``{"error": {..., "code": 404}}`` and a prompt past
    ``max_model_len`` (counted in characters here) a 400. ``requests`` records every body and its headers.

        async with VllmStandIn(answer=" Listen up, pal.") as server:
            ... server.url ...
    """

    BASE = "/models/gemma-3-270m"
    ADAPTER = "/adapters/mafioso"

    def __init__(self, answer: str = " Listen up, pal: it adds two numbers. Capisce?", *, finish_reason: str = "stop",
                 max_model_len: int = 32768, status: int | None = None):
        self.answer, self.finish_reason, self.max_model_len, self.status = answer, finish_reason, max_model_len, status
        self.requests: list[tuple[dict, dict]] = []
        self.url = ""
        self._runner = None

    async def __aenter__(self) -> "VllmStandIn":
        from aiohttp import web

        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner, self.url = await serve_loopback(app)
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self._runner.cleanup()

    @staticmethod
    def _error(status: int, message: str, kind: str):
        from aiohttp import web

        return web.json_response({"error": {"message": message, "type": kind, "param": None, "code": status}},
                                 status=status)

    def _card(self, model_id: str, root: str, parent: str | None) -> dict:
        return {"id": model_id, "object": "model", "created": 1764806400, "owned_by": "vllm", "root": root,
                "parent": parent, "max_model_len": self.max_model_len if parent is None else None,
                "permission": [{"id": "modelperm-0", "object": "model_permission", "created": 1764806400,
                                "allow_create_engine": False, "allow_sampling": True, "allow_logprobs": True,
                                "allow_search_indices": False, "allow_view": True, "allow_fine_tuning": False,
                                "organization": "*", "group": None, "is_blocking": False}]}

    async def _models(self, request):
        from aiohttp import web

        return web.json_response({"object": "list", "data": [self._card(self.BASE, self.BASE, None),
                                                             self._card("mafioso", self.ADAPTER, self.BASE)]})

    async def _read(self, request, prompt_of) -> tuple[dict | None, object]:
        body = await request.json()
        self.requests.append((body, dict(request.headers)))
        if self.status is not None:
            return None, self._error(self.status, "the stand-in was told to fail", "ServiceUnavailableError")
        if body.get("model") not in (self.BASE, "mafioso"):
            return None, self._error(404, f"The model `{body.get('model')}` does not exist.", "NotFoundError")
        prompt = prompt_of(body)
        if len(prompt) + (body.get("max_tokens") or 0) > self.max_model_len:
            return None, self._error(400, f"This model's maximum context length is {self.max_model_len} tokens. "
                                          f"However, you requested {len(prompt)} tokens.", "BadRequestError")
        stops = body.get("stop") or []
        text = self.answer
        for stop in [stops] if isinstance(stops, str) else stops:
            text = text.split(stop, 1)[0]
        return body, text

    def _usage(self, prompt: str, text: str) -> dict:
        return {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split()),
                "total_tokens": len(prompt.split()) + len(text.split()), "prompt_tokens_details": None}

    async def _stream(self, request, kind: str, pieces: list[dict]):
        from aiohttp import web

        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for piece in pieces:
            chunk = {"id": "cmpl-standin", "object": kind, "created": 1764806400, "model": "mafioso",
                     "choices": [piece]}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        return response

    async def _completions(self, request):
        from aiohttp import web

        def prompt_of(body):
            return body["prompt"] if isinstance(body["prompt"], str) else "".join(body["prompt"])

        body, text = await self._read(request, prompt_of)
        if body is None:
            return text
        if body.get("stream"):
            return await self._stream(request, "text_completion", [
                {"index": 0, "text": word, "logprobs": None, "finish_reason": None, "stop_reason": None}
                for word in text.split(" ")] + [
                {"index": 0, "text": "", "logprobs": None, "finish_reason": self.finish_reason, "stop_reason": None}])
        return web.json_response({
            "id": "cmpl-standin", "object": "text_completion", "created": 1764806400, "model": body["model"],
            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": self.finish_reason,
                         "stop_reason": None, "prompt_logprobs": None}],
            "usage": self._usage(prompt_of(body), text), "service_tier": None, "system_fingerprint": None,
            "kv_transfer_params": None})

    async def _chat(self, request):
        from aiohttp import web

        def prompt_of(body):
            return "\n".join(str(m.get("content")) for m in body["messages"])

        body, text = await self._read(request, prompt_of)
        if body is None:
            return text
        if body.get("stream"):
            return await self._stream(request, "chat.completion.chunk", [
                {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None},
                {"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": None},
                {"index": 0, "delta": {}, "logprobs": None, "finish_reason": self.finish_reason}])
        return web.json_response({
            "id": "chatcmpl-standin", "object": "chat.completion", "created": 1764806400, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "tool_calls": []},
                         "logprobs": None, "finish_reason": self.finish_reason, "stop_reason": None}],
            "usage": self._usage(prompt_of(body), text), "prompt_logprobs": None})
