"""Slack adapter (slack-bolt, asyncio): explains Python code in character.

* ``/explain <code>``: acknowledged at once, then answered through the response URL, visible to the channel
  (``SLACK_RESPONSE_TYPE=in_channel``, the default) or to the caller only (``ephemeral``);
* ``@Mafioso <code>`` (``app_mention``): answered in the message's thread;
* the "Explain this code" message shortcut (callback id ``explain_code``): answered in the message's thread.

A mention of words only in a thread ("@Mafioso is there a bug?") asks about the latest code there: remembered
from the bot's own answers, or read back from the thread (the manifest's history scopes) after a restart.

A 👍 (``+1``) or 👎 (``-1``) reaction on an answer the bot posted in a thread is a rating (``reaction_added``; the app needs the ``reactions:read`` scope and that event): with a feedback store
(:mod:`mafioso.core.feedback`) each posted message's ``channel:ts`` is linked to its answer id, and the reacting
user is stored hashed.

Socket Mode by default (``SLACK_APP_TOKEN``); HTTP mode (``mafioso serve --slack-http``) serves
``POST /slack/events``, where Bolt checks every request's signature against ``SLACK_SIGNING_SECRET``.
The Web API client talks to ``SLACK_API_URL`` and retries rate-limited calls. The bot never touches the
model: it awaits ``explainer.explain(code, request)`` (the text around a fenced block, or beside a file, is
the request); worker failures become in-character apologies.

With an explainer that streams (:mod:`mafioso.bot.streaming`), a mention's answer is streamed into its thread:
with Slack's native message streaming where the installed slack_sdk has it (``AsyncWebClient.chat_stream``:
chat.startStream / appendStream / stopStream, slack_sdk >= 3.37), else as one message edited with
``chat.update``; either way at most once a second per channel. If the final check changed text already shown
(rare), the message is then updated to the final text. The shortcut's answer streams into the message's thread
the same way; where the bot is not in the channel it goes privately to the caller through the response URL
instead, after an "invite me" line, and it is asked for once: a native stream hears Slack's ``not_in_channel``
only once the answer has started, so the rest of it is read and that text is sent. ``/explain`` answers whole
through its response URL: Slack allows five uses of one, too few to stream, and its refusals (busy, too large …)
stay private to the caller that way.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (AsyncConnectionErrorRetryHandler,
                                                         AsyncRateLimitErrorRetryHandler)
from slack_sdk.web.async_client import AsyncWebClient

from mafioso.bot.personas import (UnknownPersonaChoice, choose, parse_channel_personas, persona_of, say,
                                  split_persona_option, use_persona)
from mafioso.bot.streaming import IN_PROGRESS, Throttle, answer_texts
from mafioso.core.explanation import Explainer, Explanation
from mafioso.bot.extract import Paste, decode_code_file, error_line, extract, is_code_file, split_text
from mafioso.prompts.followups import prose
from mafioso.core.config import SlackConfig
from mafioso.core.errors import ConfigError, InputRejected, RequestError

log = logging.getLogger("mafioso.slack")

SLACK_LIMIT = 3000  # characters per message: well under Slack's 4,000 advice (escaping may grow it a little)
RESPONSE_URL_USES = 5  # Slack accepts at most five messages per response URL
HTTP_PATH = "/slack/events"
COMMAND = "/explain"
SHORTCUT_ID = "explain_code"
EVENTS_REMEMBERED = 1000  # Slack retries an event within minutes (3 tries): far fewer mentions than this
#: Threads whose latest explained code is kept (in memory) for a follow-up question mentioning the bot there.
THREADS_REMEMBERED = 1000
#: A follow-up in a thread not remembered (the bot restarted since) reads the thread's messages back for its latest
#: code (conversations.replies, oldest first, in pages of THREAD_HISTORY, at most THREAD_PAGES pages; the history
#: scopes of slack/manifest.yml): the latest code of a long thread is near its end.
THREAD_HISTORY = 200
THREAD_PAGES = 5
RATINGS = {"+1": 1, "thumbsup": 1, "-1": -1, "thumbsdown": -1}
#: A streamed answer is sent on at most this often per channel (Slack's chat.update allows ~1 a second).
EDIT_EVERY_S = 1.0
NOT_A_MEMBER = ("not_in_channel", "channel_not_found")  # Slack refusing a channel the bot is not in
_MARKUP = re.compile(r"<([^<>|]+)(?:\|([^<>]*))?>")


def escape_mrkdwn(text: str) -> str:
    """Escape the three characters Slack's mrkdwn reserves (&, <, >), so nothing pings or links."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def without_mention(text: str, bot_user_id: str | None) -> str:
    """A message's text with the bot's own mentions (``<@UBOT>``) taken out: the rest is the paste or question."""
    return text.replace(f"<@{bot_user_id}>", "") if bot_user_id else text


def slack_to_plain(text: str) -> str:
    """Undo Slack's formatting of incoming text: ``<url|label>``, ``<@U1>``, ``<#C1|name>``, ``&lt;`` …"""

    def plain(match: re.Match) -> str:
        target, label = match[1], match[2]
        if target[0] in "@#":
            return target[0] + (label or target[1:])
        if target[0] == "!":
            return "@" + (label or target[1:].split("^")[0])
        return label or target

    return _MARKUP.sub(plain, text).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


class _NoRequestBodies(logging.Filter):
    """Bolt logs the whole body of every request that fails the signature check, at INFO: anyone could write
    megabytes of their own text into our log. The fact stays, the body goes."""

    def filter(self, record: logging.LogRecord) -> bool:
        if str(record.msg).startswith("Invalid request signature"):
            record.msg, record.args = "Invalid request signature detected (request body not logged)", ()
        return True


_NO_BODIES = _NoRequestBodies()
for _name in ("slack_bolt.AsyncRequestVerification", "slack_bolt.RequestVerification"):
    logging.getLogger(_name).addFilter(_NO_BODIES)


class _Undelivered(SlackApiError):
    """Slack refused the thread (:data:`NOT_A_MEMBER`) after the answer was asked for: carries that answer's reply
    chunks, so the caller delivers them another way instead of asking the worker again."""

    def __init__(self, refused: SlackApiError, chunks: list[str]):
        super().__init__("the thread refused a streamed answer", refused.response)
        self.chunks = chunks


class SlackBot:
    """The Slack app: one Bolt ``AsyncApp``, three listeners, one way out."""

    def __init__(self, explainer: Explainer, cfg: SlackConfig, *, max_code_chars: int = 6000, feedback=None,
                 clock: Callable[[], float] = time.monotonic):
        self.explainer, self.cfg, self.max_code_chars = explainer, cfg, max_code_chars
        self.edits = Throttle(EDIT_EVERY_S, clock)  # streamed answers: sends per channel
        self.channel_personas = parse_channel_personas(cfg.channel_personas, "SLACK_CHANNEL_PERSONAS")
        self.feedback = feedback  # a mafioso.core.feedback.FeedbackStore, or None: no ratings
        # The token goes in here, not through client=: given a client, Bolt still reads SLACK_BOT_TOKEN from the
        # environment and warns that it is unused.
        self.app = AsyncApp(token=str(cfg.bot_token), signing_secret=str(cfg.signing_secret), name="mafioso")
        self.client: AsyncWebClient = self.app.client
        self.client.base_url = cfg.api_url
        self.client.retry_handlers = [AsyncRateLimitErrorRetryHandler(max_retry_count=3),
                                      AsyncConnectionErrorRetryHandler()]
        self.app.command(COMMAND)(self.on_command)
        self.app.event("app_mention")(self.on_mention)
        self.app.event("reaction_added")(self.on_reaction)
        self.app.message_shortcut(SHORTCUT_ID)(self.on_shortcut)
        self.app.error(self.on_error)
        self.bot_user_id = ""
        self._events: OrderedDict[str, None] = OrderedDict()  # the latest event ids, for _first_delivery
        self._thread_code: OrderedDict[tuple[str, str], str] = OrderedDict()  # (channel, thread) -> its code
        self._history_refused = False  # conversations.replies refused once (no history scope): said in the log
        self._runner: web.AppRunner | None = None
        self._socket: AsyncSocketModeHandler | None = None

    # ----------------------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Check the bot token (auth.test), then listen: Socket Mode, or HTTP on ``cfg.host:cfg.port``."""
        which = "SLACK_BOT_TOKEN"
        try:
            auth = await self.client.auth_test()
            self.bot_user_id, which = auth.get("user_id") or "", "SLACK_APP_TOKEN"
            if self.cfg.http:
                self._runner = web.AppRunner(self.app.web_app(path=HTTP_PATH, port=self.cfg.port))
                await self._runner.setup()
                try:
                    await web.TCPSite(self._runner, self.cfg.host, self.cfg.port).start()
                except OSError as exc:
                    await self.stop()
                    raise ConfigError(f"cannot listen on {self.cfg.host}:{self.cfg.port} ({exc.strerror}); pick "
                                      "another --port / SLACK_PORT") from None
                log.info("slack: HTTP mode on http://%s:%d%s", self.cfg.host, self.port, HTTP_PATH)
            else:
                self._socket = AsyncSocketModeHandler(self.app, str(self.cfg.app_token), web_client=self.client)
                await self._socket.connect_async()
                log.info("slack: connected in Socket Mode as %s", auth.get("user"))
        except SlackApiError as exc:
            await self.stop()
            raise ConfigError(f"Slack refused {which} ({exc.response.get('error')}); copy it again from your "
                              "app's settings (see docs/CHAT.md)") from None
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            await self.stop()
            raise ConfigError(f"cannot reach the Slack API at {self.cfg.api_url} ({type(exc).__name__}); "
                              "check SLACK_API_URL and the network") from None

    @property
    def port(self) -> int:
        """The HTTP-mode port actually bound (useful with port 0)."""
        return self._runner.addresses[0][1] if self._runner and self._runner.addresses else self.cfg.port

    async def stop(self) -> None:
        """Stop listening (closes the socket or the HTTP server)."""
        if self._socket is not None:
            await self._socket.close_async()
            self._socket = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def run_until_cancelled(self) -> None:
        """Start, serve until cancelled, stop."""
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    # ----------------------------------------------------------------------------------------- listeners

    def _first_delivery(self, event_id: str | None) -> bool:
        """Whether an event (or a command's trigger id) is new: remembers the last ``EVENTS_REMEMBERED`` ids;
        no id: always new."""
        if not event_id:
            return True
        if event_id in self._events:
            return False
        self._events[event_id] = None
        if len(self._events) > EVENTS_REMEMBERED:
            self._events.popitem(last=False)
        return True

    async def on_command(self, ack, command: dict, respond) -> None:
        """/explain <code>: acknowledge at once (Slack wants it within 3 s), then answer via the response URL."""
        if not self._first_delivery(command.get("trigger_id")):
            await ack()  # the same signed request again (a replay within Slack's five minutes): answered once
            log.info("slack: command %s delivered again; answered already", command.get("trigger_id"))
            return
        asked, text = split_persona_option(slack_to_plain(command.get("text", "")))
        try:
            use_persona(choose(self.explainer, self.channel_personas, command.get("channel_id"), asked))
        except UnknownPersonaChoice as exc:
            await ack(text=self.say("who_is_that", detail=exc))
            return
        paste = Paste(*extract(text))
        if not paste.code:
            await ack(text=self.say("no_code"))
            return
        await ack()
        chunks, explanation = await self.explain_chunks(paste)
        response_type = self.cfg.response_type if explanation else "ephemeral"  # apologies go to the caller only
        for i, chunk in enumerate(chunks[:RESPONSE_URL_USES]):
            response = await respond(text=chunk, response_type=response_type, replace_original=False)
            if response.status_code != 200:  # the answer would be lost: the caller still gets it, privately
                log.error("slack: the response URL answered HTTP %d; sending the answer with chat.postEphemeral",
                          response.status_code)
                for rest in chunks[i:]:
                    await self.client.chat_postEphemeral(channel=command["channel_id"], user=command["user_id"],
                                                         text=rest)
                return

    async def on_mention(self, event: dict, context, body: dict) -> None:
        """@Mafioso <code> (or with a .py file): answer in the message's thread, once per event: Slack delivers
        an event again when it saw no acknowledgement in time (a slow network, a restart)."""
        if event.get("bot_id"):
            return  # another bot: no loops
        if not self._first_delivery(body.get("event_id")):
            log.info("slack: event %s delivered again; answered already", body.get("event_id"))
            return
        text = without_mention(event.get("text", ""), context.bot_user_id or self.bot_user_id)
        thread = event.get("thread_ts") or event["ts"]
        use_persona(choose(self.explainer, self.channel_personas, event.get("channel")))
        where = (event["channel"], thread)
        if self._streams():
            try:
                paste, _ = await self.gather_code(slack_to_plain(text), event.get("files") or [], where)
            except InputRejected:
                paste = Paste("")  # a file that is not text: answer() below says so
            if paste.code.strip():
                await self.stream_reply(event["channel"], thread, paste, event.get("user"), body.get("team_id"))
                return
        chunks, explanation = await self.answer(text, event.get("files"), where)
        await self.post_in_thread(event["channel"], thread, chunks, explanation, event.get("user"))

    async def on_shortcut(self, ack, shortcut: dict, respond) -> None:
        """Message menu → "Explain this code": answer in the message's thread (privately if we are not there)."""
        await ack()
        message = shortcut.get("message", {})
        use_persona(choose(self.explainer, self.channel_personas, shortcut.get("channel", {}).get("id")))
        channel, thread = shortcut["channel"]["id"], message.get("thread_ts") or message["ts"]
        user = shortcut.get("user", {}).get("id")
        try:
            if self._streams():
                try:
                    paste, _ = await self.gather_code(slack_to_plain(message.get("text", "")),
                                                      message.get("files") or [])
                except InputRejected:
                    paste = Paste("")  # a file that is not text: answer() below says so
                if paste.code.strip():
                    await self.stream_reply(channel, thread, paste, user, shortcut.get("team", {}).get("id"))
                    return
            chunks, explanation = await self.answer(message.get("text", ""), message.get("files"))
            await self.post_in_thread(channel, thread, chunks, explanation, user)
        except SlackApiError as exc:
            if exc.response.get("error") not in NOT_A_MEMBER:
                raise
            if isinstance(exc, _Undelivered):  # refused mid-stream: the answer is made already, never ask twice
                chunks = exc.chunks
            else:  # refused before anything was asked
                chunks, _ = await self.answer(message.get("text", ""), message.get("files"))
            for chunk in [self.say("invite_me"), *chunks][:RESPONSE_URL_USES]:
                await respond(text=chunk, response_type="ephemeral", replace_original=False)

    async def on_error(self, error: Exception, body: dict, respond) -> None:
        """Central handler for anything a listener did not expect: log it, apologise privately, keep running."""
        what = body.get("type") or body.get("command")
        if isinstance(error, SlackApiError):  # Slack refused or failed (500s, 429s past the retries): no traceback
            log.error("slack: answering a %s failed: Slack said %s (HTTP %s)", what, error.response.get("error"),
                      error.response.status_code)
        else:
            log.error("slack: unexpected error handling a %s: %s", what, type(error).__name__, exc_info=error)
        if respond is None or not body.get("response_url"):  # events have no response URL: nowhere else to say it
            return
        try:
            response = await respond(text=self.say("apology"), response_type="ephemeral", replace_original=False)
        except aiohttp.ClientError:
            response = None
        if response is None or response.status_code != 200:
            log.error("slack: could not send the apology either")

    # ----------------------------------------------------------------------------------- the one way out

    async def answer(self, text: str, files: list[dict] | None,
                     thread: tuple[str, str] | None = None) -> tuple[list[str], Explanation | None]:
        """The reply chunks for a message's text (Slack-formatted) and its files, in ``thread`` (channel, ts:
        a follow-up there asks about its code); and the answer (None: none)."""
        try:
            paste, too_big = await self.gather_code(slack_to_plain(text), files or [], thread)
        except InputRejected as exc:  # a Python file that is not text
            return [escape_mrkdwn(self.refusal(exc))], None
        if not paste.code and too_big:
            return [escape_mrkdwn(self.say("file_too_big", limit=self.max_code_chars))], None
        return await self.explain_chunks(paste)

    def say(self, situation: str, **values: object) -> str:
        """The line for ``situation`` in the voice of the persona answering this request."""
        return say(self.explainer, situation, **values)

    def refusal(self, exc: RequestError) -> str:
        """The line for a request that was not served, in the voice of the persona answering it."""
        return error_line(exc, self.max_code_chars, persona_of(self.explainer))

    async def gather_code(self, text: str, files: list[dict],
                          thread: tuple[str, str] | None = None) -> tuple[Paste, bool]:
        """The code of the text and the Python files/snippets with the message's question (:class:`Paste`), and
        whether a file was too big to take. In a ``thread`` (channel, ts) a text of words only and no file is a
        follow-up: the question about the code last explained there (kept in memory for the last
        ``THREADS_REMEMBERED`` threads; a thread not among them is read back, :meth:`thread_code`); code is
        remembered for the next one."""
        files = [f for f in files if is_code_file(f.get("name") or "", f.get("filetype"))]
        parts = []
        for file in files:
            if file.get("size", 0) <= self.max_code_chars:
                parts.append(decode_code_file(await self.download(file)))
        paste = Paste.of(text, parts)
        if thread is not None:
            follow_up = not files and prose(text)
            if follow_up and thread not in self._thread_code and (earlier := await self.thread_code(*thread)):
                self._thread_code[thread] = earlier
            if follow_up and thread in self._thread_code:
                paste = Paste(self._thread_code[thread], " ".join(text.split()))
            elif paste.code.strip() and not follow_up:  # words explained as code are no code to ask about
                self._thread_code[thread] = paste.code
                self._thread_code.move_to_end(thread)
                if len(self._thread_code) > THREADS_REMEMBERED:
                    self._thread_code.popitem(last=False)
        return paste, len(parts) < len(files)

    async def thread_code(self, channel: str, thread_ts: str) -> str:
        """The code of the latest message in a thread that has some (text or files; our answers and other bots'
        messages passed over), read from Slack: what a follow-up there asks about when the bot does not remember
        the thread. Empty when there is none, or Slack refuses (without a history scope: logged once)."""
        messages, cursor = [], None
        try:
            for _ in range(THREAD_PAGES):  # Slack gives a thread oldest first, a page at a time
                reply = await self.client.conversations_replies(channel=channel, ts=thread_ts, limit=THREAD_HISTORY,
                                                                cursor=cursor)
                messages += reply.get("messages") or []
                if not (cursor := (reply.get("response_metadata") or {}).get("next_cursor")):
                    break
        except (SlackApiError, aiohttp.ClientError, asyncio.TimeoutError) as exc:
            if not self._history_refused:
                self._history_refused = True
                response = getattr(exc, "response", None)
                why = (response.data.get("error") if response is not None and isinstance(response.data, dict)
                       else type(exc).__name__)
                log.warning("slack: cannot read a thread for a follow-up (%s; the manifest's history scopes let a "
                            "follow-up find code explained before a restart)", why)
            return ""
        for message in reversed(messages):
            if message.get("bot_id"):
                continue
            text = slack_to_plain(without_mention(message.get("text", ""), self.bot_user_id))
            files = message.get("files") or []
            if not files and prose(text):
                continue
            try:
                paste, _ = await self.gather_code(text, files)
            except InputRejected:
                continue
            if paste.code.strip():
                return paste.code
        return ""

    async def download(self, file: dict) -> bytes:
        """A file's bytes (empty when it cannot be had); the bot token only ever goes to Slack's hosts."""
        url = file.get("url_private_download") or file.get("url_private") or ""
        host = urlsplit(url).hostname or ""
        if not (host == "slack.com" or host.endswith(".slack.com") or host == urlsplit(self.cfg.api_url).hostname):
            log.warning("slack: skipped a file that is not on Slack's servers")
            return b""
        headers = {"Authorization": f"Bearer {self.cfg.bot_token}"}
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
                async with session.get(url, headers=headers, allow_redirects=False) as response:
                    if response.status != 200:  # a redirect means a login page: the files:read scope is missing
                        log.warning("slack: file download answered %d (is files:read granted?)", response.status)
                        return b""
                    data = bytearray()
                    async for piece in response.content.iter_chunked(1 << 16):
                        data += piece
                        if len(data) > 4 * self.max_code_chars:  # the size Slack reported was wrong
                            return b""
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            log.warning("slack: file download failed: %s", type(exc).__name__)
            return b""
        return bytes(data)

    async def explain_chunks(self, paste: Paste) -> tuple[list[str], Explanation | None]:
        """The explanation in escaped chunks under Slack's limits, or an in-character line; and the answer
        (None when it did not work)."""
        if not paste.code.strip():
            return [escape_mrkdwn(self.say("no_code"))], None
        try:
            explanation = await self.explainer.explain(paste.code, paste.request)
        except RequestError as exc:
            log.warning("slack: request not served: %s", type(exc).__name__)
            return [escape_mrkdwn(self.refusal(exc))], None
        return self.reply_chunks(explanation.text), explanation

    def reply_chunks(self, text: str) -> list[str]:
        """An answer's text as escaped chunks under Slack's limits (the "empty answer" line when it is blank)."""
        chunks = split_text(text, SLACK_LIMIT) or [self.say("empty_answer")]
        return [escape_mrkdwn(chunk) for chunk in chunks]

    def _streams(self) -> bool:
        """Whether the explainer hands out text as it is made (:mod:`mafioso.bot.streaming`)."""
        return callable(getattr(self.explainer, "stream", None))

    async def stream_reply(self, channel: str, thread_ts: str, paste: Paste, user: str | None,
                           team: str | None) -> None:
        """Stream the answer into one reply in the thread (module docstring), linked to the answer for ratings.

        A thread Slack refuses before the answer is asked for raises that SlackApiError; one it refuses later
        (the native stream says ``not_in_channel`` only at its first append, or at stop) raises
        :class:`_Undelivered` with the whole answer's chunks: the answer is read to its end, not asked for again.
        """
        native = callable(getattr(self.client, "chat_stream", None)) and user and team
        streamer = ts = refused = None
        sent = ""
        if native:
            streamer = await self.client.chat_stream(channel=channel, thread_ts=thread_ts, recipient_user_id=user,
                                                     recipient_team_id=team, buffer_size=1)
        else:
            ts = (await self.client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=IN_PROGRESS.strip(),
                                                     unfurl_links=False, unfurl_media=False))["ts"]
        explanation, final = None, ""
        try:
            async for text, answer in answer_texts(self.explainer, paste.code, paste.request):
                if answer is not None:
                    explanation, final = answer, text or self.say("empty_answer")
                elif refused is None and self.edits.ready(channel) and text.startswith(sent):
                    try:
                        if native:
                            await streamer.append(markdown_text=escape_mrkdwn(text[len(sent):]))
                        else:
                            await self.client.chat_update(channel=channel, ts=ts,
                                                          text=escape_mrkdwn(text) + IN_PROGRESS)
                    except SlackApiError as exc:
                        if exc.response.get("error") not in NOT_A_MEMBER:
                            raise
                        refused = exc  # nothing more goes to the thread; the answer is still read to its end
                    sent = text
        except RequestError as exc:
            log.warning("slack: request not served: %s", type(exc).__name__)
            final = self.refusal(exc)
        if refused is None:
            try:
                ts = await self._finish_stream(channel, ts, streamer, sent, final)
            except SlackApiError as exc:
                if exc.response.get("error") not in NOT_A_MEMBER:
                    raise
                refused = exc
        if refused is not None:
            log.warning("slack: the thread refused a streamed answer (%s)", refused.response.get("error"))
            raise _Undelivered(refused, self.reply_chunks(final))
        if self.feedback is not None and explanation is not None and explanation.answer_id and ts:
            await self.feedback.call("link_message", "slack", f"{channel}:{ts}", explanation.answer_id, user,
                                     explanation.text)

    async def _finish_stream(self, channel: str, ts: str | None, streamer, sent: str, final: str) -> str | None:
        """Show the final text of a streamed reply (what is left of it, natively); the reply's ts."""
        if streamer is None:
            await self.client.chat_update(channel=channel, ts=ts, text=escape_mrkdwn(final))
            return ts
        rest = final[len(sent):] if final.startswith(sent) else ""
        ts = (await streamer.stop(markdown_text=escape_mrkdwn(rest)) if rest or not sent else
              await streamer.stop()).get("ts") or streamer.ts
        if not final.startswith(sent):  # the final check changed text already shown
            await self.client.chat_update(channel=channel, ts=ts, text=escape_mrkdwn(final))
        return ts

    async def post_in_thread(self, channel: str, thread_ts: str, chunks: list[str],
                             explanation: Explanation | None = None, user: str | None = None) -> None:
        """Post the chunks as replies in a thread; each one carrying an answer is linked to it for ratings."""
        for chunk in chunks:
            posted = await self.client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=chunk,
                                                        unfurl_links=False, unfurl_media=False)
            if self.feedback is not None and explanation is not None and explanation.answer_id and posted.get("ts"):
                await self.feedback.call("link_message", "slack", f"{channel}:{posted['ts']}",
                                         explanation.answer_id, user, explanation.text)

    async def on_reaction(self, event: dict) -> None:
        """👍 / 👎 on one of our answers: the reacting user's rating (stored hashed; their last one counts)."""
        rating = RATINGS.get(event.get("reaction", "").split("::")[0])  # "+1::skin-tone-2" is still a +1
        item = event.get("item") or {}
        if rating is None or self.feedback is None or item.get("type") != "message" or not event.get("user"):
            return
        answer_id = await self.feedback.call("answer_for_message", "slack", f"{item.get('channel')}:{item.get('ts')}")
        if answer_id:
            await self.feedback.call("rate", answer_id, rating, event["user"], "slack")
