"""A loopback stand-in for Slack (Web API, response URLs, files, Socket Mode) and the requests Slack signs."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
from urllib.parse import urlencode

from tests.helpers import serve_loopback


def slack_signature_headers(secret: str, body: str, timestamp: int | None = None) -> dict:
    """The headers Slack signs a request with (``v0=`` HMAC-SHA256 of ``v0:<ts>:<body>``)."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"v0:{timestamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": str(timestamp), "X-Slack-Signature": f"v0={digest}"}


_TRIGGERS = itertools.count(1)


def slash_command_body(text: str, response_url: str, command: str = "/explain", trigger_id: str = "") -> str:
    """A form-encoded slash-command request body, as Slack sends it (each with its own trigger id)."""
    return urlencode({"token": "legacy", "team_id": "T1", "team_domain": "family", "channel_id": "C1",
                      "channel_name": "code", "user_id": "U1", "user_name": "vito", "command": command,
                      "text": text, "api_app_id": "A1", "response_url": response_url,
                      "trigger_id": trigger_id or f"{next(_TRIGGERS)}.2.3"})


class SlackStub:
    """Loopback aiohttp server standing in for Slack: the Web API under ``/api/``, response URLs under
    ``/response/``, files under ``/files/``. Records what the app sent; ``fail`` maps a Web API method to an
    error code; ``rate_limit`` answers HTTP 429 to that many calls first; ``http_status`` maps a Web API method
    (or ``"response"``, the response URLs) to an HTTP status it answers with instead (e.g. 500)."""

    def __init__(self, files: dict[str, bytes] | None = None):
        self.calls: list[tuple[str, dict]] = []
        self.responses: list[dict] = []
        self.downloads: list[dict] = []
        self.files = files or {}
        self.fail: dict[str, str] = {}
        self.http_status: dict[str, int] = {}
        self.rate_limit = 0
        self.threads: dict[str, list[dict]] = {}  # conversations.replies: a thread's ts -> its messages
        self.envelopes: asyncio.Queue = asyncio.Queue()  # Socket Mode: what "Slack" sends down the socket
        self.acks: list[dict] = []  # Socket Mode: what the app sent back
        self._runner = None
        self.url = ""

    async def __aenter__(self) -> "SlackStub":
        from aiohttp import web

        app = web.Application()
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)  # slack_sdk reads some methods with GET (query string)
        app.router.add_post("/response/{id}", self._response)
        app.router.add_get("/files/{name}", self._file)
        app.router.add_get("/socket", self._socket)
        self._runner, self.url = await serve_loopback(app)
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self._runner.cleanup()

    async def _api(self, request):
        from aiohttp import web

        method = request.match_info["method"]
        if request.method == "GET":
            data = dict(request.query)
        else:
            data = dict(await request.post()) if request.content_type != "application/json" else await request.json()
        if method == "chat.postMessage" and self.rate_limit > 0:
            self.rate_limit -= 1
            return web.json_response({"ok": False, "error": "ratelimited"}, status=429,
                                     headers={"Retry-After": "0"})
        self.calls.append((method, data))
        if method in self.http_status:
            return web.json_response({"ok": False, "error": "internal_error"}, status=self.http_status[method])
        if method in self.fail:
            return web.json_response({"ok": False, "error": self.fail[method]})
        if method == "apps.connections.open":
            return web.json_response({"ok": True, "url": self.url.replace("http", "ws", 1) + "/socket"})
        if method == "auth.test":
            return web.json_response({"ok": True, "user_id": "UBOT", "bot_id": "B1", "team_id": "T1",
                                      "user": "mafioso", "team": "family", "url": "https://family.slack.com/"})
        if method == "conversations.replies":
            start, limit = int(data.get("cursor") or 0), int(data.get("limit") or 1000)
            messages = self.threads.get(data.get("ts"), [])
            more = start + limit < len(messages)
            return web.json_response({"ok": True, "messages": messages[start:start + limit], "has_more": more,
                                      "response_metadata": {"next_cursor": str(start + limit) if more else ""}})
        return web.json_response({"ok": True, "ts": "1700000001.000200", "channel": data.get("channel")})

    async def _response(self, request):
        from aiohttp import web

        self.responses.append(await request.json())
        status = self.http_status.get("response", 200)
        return web.Response(text="ok" if status == 200 else "internal_error", status=status)

    async def _file(self, request):
        from aiohttp import web

        self.downloads.append({"name": request.match_info["name"],
                               "authorization": request.headers.get("Authorization")})
        return web.Response(body=self.files.get(request.match_info["name"], b""))

    async def _socket(self, request):
        from aiohttp import web

        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_json({"type": "hello", "num_connections": 1})

        async def feed():
            while True:
                await ws.send_json(await self.envelopes.get())

        feeder = asyncio.ensure_future(feed())
        try:
            async for message in ws:
                if message.type.name == "TEXT":
                    self.acks.append(json.loads(message.data))
        finally:
            feeder.cancel()
        return ws

    def posted(self, method: str = "chat.postMessage") -> list[dict]:
        """What the app sent to one Web API method."""
        return [data for name, data in self.calls if name == method]

    async def wait_for(self, condition, timeout: float = 5.0) -> None:
        """Wait until ``condition()`` is true (the app answers in the background after its ack)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not condition():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out; calls={self.calls} responses={self.responses}")
            await asyncio.sleep(0.01)
