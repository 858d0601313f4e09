"""An :class:`~bot.explainer.Explainer` that calls a remote ``mafioso worker`` over HTTP.

    async with WorkerClient("http://127.0.0.1:8000", api_key) as client:
        answer = await client.explain("print(1 + 1)")

HTTP errors come back as the same exceptions the in-process worker raises: 400/413 → InputRejected,
503 → WorkerBusy (or WorkerUnavailable while the worker shuts down), 504 → WorkerTimeout, connection
errors → WorkerUnavailable. Messages are the worker's in-character ones.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp

from bot.explainer import Explanation
from mafioso.errors import InputRejected, RequestError, WorkerBusy, WorkerTimeout, WorkerUnavailable

__all__ = ["WorkerClient"]

log = logging.getLogger(__name__)

UNREACHABLE = "Can't reach the boss right now, pal. The line's dead; try again in a bit."
REJECTED_KEY = "The boss doesn't take calls from strangers. Somebody gave me the wrong key."


class WorkerClient:
    """Explains code by calling a worker's ``POST /v1/explain``."""

    def __init__(self, url: str, api_key: str = "", timeout: float = 150.0):
        self.url = url.rstrip("/")
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

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout)
        return self._session

    async def explain(self, code: str, request: str | None = None) -> Explanation:
        """Explain ``code`` on the worker; raises the RequestError the worker answered with."""
        body = {"code": code, "request": request}
        try:
            async with self._open().post(f"{self.url}/v1/explain", json=body) as response:
                data = await self._json(response)
        except asyncio.TimeoutError:
            raise WorkerTimeout("The boss never called back, pal. Try again in a bit.") from None
        except aiohttp.ClientError as exc:
            log.warning("cannot reach the worker at %s: %s", self.url, type(exc).__name__)
            raise WorkerUnavailable(UNREACHABLE) from None
        return Explanation(text=data["explanation"], tokens=data["tokens"], latency_s=data["latency_s"],
                           finished=data["finished"], code_leak=data.get("code_leak", False),
                           answer_id=data.get("answer_id", ""))

    async def rate(self, answer_id: str, rating: int) -> None:
        """Rate an answer this worker gave (``POST /v1/feedback``); raises :class:`bot.feedback.UnknownAnswer`
        or the RequestError the worker answered with."""
        from bot.feedback import UnknownAnswer

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
            raise WorkerTimeout("The boss never called back, pal. Try again in a bit.") from None
        except aiohttp.ClientError as exc:
            log.warning("cannot reach the worker at %s: %s", self.url, type(exc).__name__)
            raise WorkerUnavailable(UNREACHABLE) from None
        if response.status == 404 and error.get("code") == "answer_not_found":
            raise UnknownAnswer(answer_id)
        raise RequestError(error.get("message") or f"the worker answered HTTP {response.status}")

    @staticmethod
    async def _json(response: aiohttp.ClientResponse) -> dict:
        try:
            data = await response.json()
        except (aiohttp.ContentTypeError, ValueError):
            data = {}
        if response.status == 200 and "explanation" in data:
            return data
        error = data.get("error") if isinstance(data.get("error"), dict) else {}
        message = error.get("message") or f"the worker answered HTTP {response.status}"
        if response.status in (400, 413) and error.get("code") in ("empty", "too_large", "binary"):
            raise InputRejected(error["code"], message)
        if response.status == 413:
            raise InputRejected("too_large", message)
        if response.status == 401:
            log.error("the worker refused the API key: check MAFIOSO_API_KEY")
            raise WorkerUnavailable(REJECTED_KEY)
        if response.status == 503:
            raise WorkerUnavailable(message) if error.get("code") == "unavailable" else WorkerBusy(message)
        if response.status == 504:
            raise WorkerTimeout(message)
        log.error("the worker answered HTTP %d (%s)", response.status, error.get("type"))
        raise RequestError(message)
