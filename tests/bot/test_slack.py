"""The Slack adapter: the real Bolt app in HTTP mode on loopback, signed requests, a loopback stand-in for
Slack (Web API, response URLs, files) and a fake Explainer at the boundary."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from urllib.parse import urlencode

import aiohttp
import pytest

from mafioso.prompts.lines import line
from mafioso.bot.slack_bot import SLACK_LIMIT, SlackBot, escape_mrkdwn, slack_to_plain
from mafioso.core.config import SlackConfig
from mafioso.core.errors import ConfigError, WorkerBusy, WorkerUnavailable
from tests.bot.helpers import FakeExplainer
from tests.bot.slack_stub import SlackStub, slack_signature_headers, slash_command_body
from tests.helpers import free_port

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@contextlib.asynccontextmanager
async def slack_app(explainer, files=None, feedback=None, **cfg):
    """The stub Slack and the real app in HTTP mode on loopback; yields (stub, events URL)."""
    async with SlackStub(files) as stub:
        values = {"bot_token": "xoxb-test", "signing_secret": SECRET, "api_url": f"{stub.url}/api/",
                  "http": True, "host": "127.0.0.1", "port": free_port()}
        values.update(cfg)
        bot = SlackBot(explainer, SlackConfig(**values), feedback=feedback)
        await bot.start()
        try:
            yield stub, f"http://127.0.0.1:{bot.port}/slack/events"
        finally:
            await bot.stop()


async def post_signed(url: str, body: str, headers: dict | None = None, secret: str = SECRET,
                      timestamp: int | None = None) -> tuple[int, float]:
    """POST a signed request like Slack does; returns the status and the seconds the ack took."""
    headers = {**(headers or FORM), **slack_signature_headers(secret, body, timestamp)}
    started = time.monotonic()
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=body.encode(), headers=headers) as response:
            await response.read()
            return response.status, time.monotonic() - started


def mention_body(text: str, *, ts="1700000000.000100", thread_ts=None, files=None, bot_id=None,
                 event_id="Ev1") -> str:
    event = {"type": "app_mention", "user": "U1", "text": text, "ts": ts, "channel": "C1", "event_ts": ts}
    event.update({k: v for k, v in (("thread_ts", thread_ts), ("files", files), ("bot_id", bot_id)) if v})
    return json.dumps({"token": "legacy", "team_id": "T1", "api_app_id": "A1", "event": event,
                       "type": "event_callback", "event_id": event_id, "event_time": 1700000000,
                       "authorizations": [{"team_id": "T1", "user_id": "UBOT", "is_bot": True}]})


def shortcut_body(text: str, response_url: str, channel="C1", thread_ts=None) -> str:
    message = {"type": "message", "user": "U2", "text": text, "ts": "1700000000.000300"}
    if thread_ts:
        message["thread_ts"] = thread_ts
    payload = {"type": "message_action", "callback_id": "explain_code", "trigger_id": "1.2.3",
               "response_url": response_url, "team": {"id": "T1", "domain": "family"},
               "channel": {"id": channel, "name": "code"}, "user": {"id": "U1", "name": "vito"},
               "message_ts": message["ts"], "message": message, "token": "legacy"}
    return urlencode({"payload": json.dumps(payload)})


# ---------------------------------------------------------------------------------------- /explain


def test_slash_command_is_acked_at_once_then_answered_on_the_response_url():
    async def main():
        gate = asyncio.Event()
        explainer = FakeExplainer(answer="It checks `a < b` & prints <@U999>. Capisce?", gate=gate)
        async with slack_app(explainer) as (stub, url):
            body = slash_command_body("```python\nprint(1 &lt; 2)\n```", f"{stub.url}/response/1")
            status, took = await post_signed(url, body)
            assert status == 200 and took < 3.0
            assert stub.responses == []  # the ack did not wait for the answer
            gate.set()
            await stub.wait_for(lambda: stub.responses)
        return explainer, stub

    explainer, stub = asyncio.run(main())
    assert explainer.codes == ["print(1 < 2)"]  # fence stripped, Slack's escaping undone
    (response,) = stub.responses
    assert response["response_type"] == "in_channel"
    assert response["text"] == "It checks `a &lt; b` &amp; prints &lt;@U999&gt;. Capisce?"


@pytest.mark.parametrize("streams", [False, True])
def test_the_question_around_the_code_is_asked_with_it(streams):
    """"/explain is there a bug? ```…```" and "@Mafioso why? ```…```": the question goes with the code (it was
    dropped, and the code only explained)."""
    from tests.bot.helpers import StreamingExplainer

    async def main():
        explainer = StreamingExplainer(["Listen up.", " Capisce?"]) if streams else FakeExplainer()
        async with slack_app(explainer) as (stub, url):
            await post_signed(url, slash_command_body("is there a bug?\n```\nx = 1 &lt; 2\n```",
                                                      f"{stub.url}/response/1"))
            await stub.wait_for(lambda: stub.responses)
            await post_signed(url, mention_body("<@UBOT> why  this?\n```py\ny = 2\n```"),
                              {"Content-Type": "application/json"})
            await stub.wait_for(lambda: len(explainer.codes) == 2)
        return explainer

    explainer = asyncio.run(main())
    assert explainer.codes == ["x = 1 < 2", "y = 2"]
    assert explainer.requests == ["is there a bug?", "why this?"]


def test_ephemeral_response_type_is_configurable():
    async def main():
        async with slack_app(FakeExplainer(), response_type="ephemeral") as (stub, url):
            await post_signed(url, slash_command_body("x = 1", f"{stub.url}/response/1"))
            await stub.wait_for(lambda: stub.responses)
        return stub

    assert asyncio.run(main()).responses[0]["response_type"] == "ephemeral"


def test_empty_slash_command_gets_usage_in_the_ack_and_no_worker_call():
    async def main():
        explainer = FakeExplainer()
        async with slack_app(explainer) as (stub, url):
            body = slash_command_body("   ", f"{stub.url}/response/1")
            headers = {**FORM, **slack_signature_headers(SECRET, body)}
            async with aiohttp.ClientSession() as session:
                async with session.post(url, data=body, headers=headers) as response:
                    ack = await response.text()  # a plain-text ack is an ephemeral reply
        return explainer, ack

    explainer, ack = asyncio.run(main())
    assert explainer.codes == [] and "Python" in ack


def test_worker_failure_becomes_an_apology_and_the_app_keeps_serving():
    async def main():
        explainer = FakeExplainer(error=WorkerUnavailable("connect to 10.1.2.3:8000 refused; key=abc"))
        async with slack_app(explainer) as (stub, url):
            status, _ = await post_signed(url, slash_command_body("x = 1", f"{stub.url}/response/1"))
            await stub.wait_for(lambda: stub.responses)
            explainer.error = None
            status2, _ = await post_signed(url, slash_command_body("y = 2", f"{stub.url}/response/2"))
            await stub.wait_for(lambda: len(stub.responses) == 2)
        return status, status2, stub

    status, status2, stub = asyncio.run(main())
    assert status == status2 == 200
    apology, answer = stub.responses
    assert "ain't takin' visitors" in apology["text"] and "10.1.2.3" not in apology["text"]
    assert apology["response_type"] == "ephemeral"
    assert answer["text"].startswith("Listen up, pal: y = 2")


def test_bad_signature_and_stale_timestamp_are_401():
    async def main():
        explainer = FakeExplainer()
        async with slack_app(explainer) as (stub, url):
            body = slash_command_body("x = 1", f"{stub.url}/response/1")
            forged, _ = await post_signed(url, body, secret="not-the-secret")
            stale, _ = await post_signed(url, body, timestamp=int(time.time()) - 600)
            async with aiohttp.ClientSession() as session:
                async with session.post(url, data=body, headers=FORM) as response:
                    unsigned = response.status
            await asyncio.sleep(0.1)
        return explainer, stub, (forged, stale, unsigned)

    explainer, stub, statuses = asyncio.run(main())
    assert statuses == (401, 401, 401)
    assert explainer.codes == [] and stub.responses == []


def test_a_replayed_command_is_answered_once_and_forged_bodies_stay_out_of_the_log(caplog):
    caplog.set_level(logging.DEBUG)

    async def main():
        explainer = FakeExplainer()
        async with slack_app(explainer) as (stub, url):
            body = slash_command_body("x = 1", f"{stub.url}/response/1")
            first, _ = await post_signed(url, body)
            again, _ = await post_signed(url, body)  # the same signed request, replayed within five minutes
            await stub.wait_for(lambda: stub.responses)
            secret_text = "print('my private code')" + "x" * 1000
            forged, _ = await post_signed(url, slash_command_body(secret_text, f"{stub.url}/response/2"),
                                          secret="not-the-secret")
            await asyncio.sleep(0.1)
        return explainer, (first, again, forged)

    explainer, statuses = asyncio.run(main())
    assert statuses == (200, 200, 401) and explainer.codes == ["x = 1"]
    assert "Invalid request signature" in caplog.text and "private code" not in caplog.text


def test_a_failing_response_url_still_delivers_the_answer_privately(caplog):
    async def main():
        async with slack_app(FakeExplainer()) as (stub, url):
            stub.http_status["response"] = 500
            await post_signed(url, slash_command_body("x = 1", f"{stub.url}/response/1"))
            await stub.wait_for(lambda: any(m == "chat.postEphemeral" for m, _ in stub.calls))
        return stub

    stub = asyncio.run(main())
    ((_, sent),) = [c for c in stub.calls if c[0] == "chat.postEphemeral"]
    assert sent["user"] == "U1" and sent["channel"] == "C1" and sent["text"].startswith("Listen up, pal: x = 1")
    assert any(r.levelname == "ERROR" and "HTTP 500" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("kind", ["mention", "command"])
def test_slack_failing_everywhere_is_an_error_line_and_the_app_keeps_serving(caplog, kind):
    async def main():
        explainer = FakeExplainer()
        async with slack_app(explainer) as (stub, url):
            stub.http_status.update({"chat.postMessage": 500, "chat.postEphemeral": 500, "response": 500})
            if kind == "mention":
                await post_signed(url, mention_body("<@UBOT> x = 1"), {"Content-Type": "application/json"})
            else:
                await post_signed(url, slash_command_body("x = 1", f"{stub.url}/response/1"))
            await stub.wait_for(lambda: any(r.levelname == "ERROR" and "Slack said" in r.getMessage()
                                            for r in caplog.records))
            stub.http_status.clear()
            await post_signed(url, mention_body("<@UBOT> y = 2", event_id="Ev2"), {"Content-Type": "application/json"})
            await stub.wait_for(lambda: stub.posted())
        return explainer

    assert asyncio.run(main()).codes == ["x = 1", "y = 2"]
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("Slack said internal_error (HTTP 500)" in e for e in errors)
    assert not any("unsupported here" in r.getMessage() or r.exc_info for r in caplog.records
                   if r.name.startswith("slack_bolt"))  # the error handler itself no longer fails


# ------------------------------------------------------------------------------ mentions and shortcut


def test_mention_is_answered_in_the_thread():
    async def main():
        explainer = FakeExplainer()
        async with slack_app(explainer) as (stub, url):
            status, _ = await post_signed(url, mention_body("<@UBOT> ```py\nprint(1 &amp; 2)\n```"),
                                          {"Content-Type": "application/json"})
            await stub.wait_for(lambda: stub.posted())
        return status, explainer, stub

    status, explainer, stub = asyncio.run(main())
    assert status == 200
    assert explainer.codes == ["print(1 & 2)"]
    (post,) = stub.posted()
    assert post["channel"] == "C1" and post["thread_ts"] == "1700000000.000100"
    assert post["text"] == "Listen up, pal: print(1 &amp; 2). Capisce?"


def test_mention_inside_a_thread_answers_in_that_thread_and_reads_python_files():
    async def main():
        explainer = FakeExplainer()
        async with slack_app(explainer, files={"mob.py": b"def boss():\n    return 'Vito'\n"}) as (stub, url):
            files = [{"id": "F1", "name": "mob.py", "filetype": "python", "mode": "snippet", "size": 32,
                      "url_private_download": f"{stub.url}/files/mob.py"},
                     {"id": "F2", "name": "evil.py", "filetype": "python", "size": 10,
                      "url_private_download": "https://attacker.example/evil.py"}]
            await post_signed(url, mention_body("<@UBOT> explain this file", thread_ts="1699999999.000001",
                                                files=files), {"Content-Type": "application/json"})
            await stub.wait_for(lambda: stub.posted())
        return explainer, stub

    explainer, stub = asyncio.run(main())
    assert explainer.codes == ["def boss():\n    return 'Vito'"]  # the request text is not code
    assert explainer.requests == ["explain this file"]  # but it is what the mention asks
    assert stub.downloads == [{"name": "mob.py", "authorization": "Bearer xoxb-test"}]  # token only to Slack
    assert stub.posted()[0]["thread_ts"] == "1699999999.000001"


@pytest.mark.parametrize("streams", [False, True])
def test_a_follow_up_mention_in_a_thread_asks_about_the_code_explained_there(streams):
    """"@Mafioso is there a bug?" in the thread of an answer: the question about that thread's code (it was
    explained as code itself). Another thread, or words with nothing explained before, stay as they were."""
    from tests.bot.helpers import StreamingExplainer

    async def main():
        explainer = StreamingExplainer(["Listen up.", " Capisce?"]) if streams else FakeExplainer()
        async with slack_app(explainer) as (stub, url):
            headers = {"Content-Type": "application/json"}
            first = "1700000000.000100"
            await post_signed(url, mention_body("<@UBOT> ```py\nx = 1\n```", ts=first, event_id="Ev1"), headers)
            await stub.wait_for(lambda: len(explainer.codes) == 1)  # answered before the follow-up comes
            await post_signed(url, mention_body("<@UBOT> is there  a bug?", ts="1700000000.000200", thread_ts=first,
                                                event_id="Ev2"), headers)
            await post_signed(url, mention_body("<@UBOT> why?", ts="1700000000.000300", event_id="Ev3"), headers)
            await post_signed(url, mention_body("<@UBOT> y = 2", ts="1700000000.000400", thread_ts=first,
                                                event_id="Ev4"), headers)
            await stub.wait_for(lambda: len(explainer.codes) == 4)
        return explainer

    explainer = asyncio.run(main())
    assert explainer.codes == ["x = 1", "x = 1", "why?", "y = 2"]
    assert explainer.requests == [None, "is there a bug?", None, None]


def test_a_follow_up_after_a_restart_reads_the_thread_back_for_its_code(caplog):
    """The bot remembers threads in memory only: after a restart, "@Mafioso is there a bug?" in an old thread
    was explained as code itself. It now reads the thread (conversations.replies) for its latest code, passing
    over bot messages; without the history scope it says so in the log once and answers as before."""
    first = "1700000000.000100"
    thread = [{"user": "U1", "text": "<@UBOT> ```py\nx = 1\n```", "ts": first},
              {"bot_id": "B1", "user": "UBOT", "text": "Listen up, `x` is one.", "ts": "1700000000.000150",
               "thread_ts": first},
              {"user": "U1", "text": "<@UBOT> is there a bug?", "ts": "1700000000.000200", "thread_ts": first}]

    async def main(refuse: bool):
        explainer = FakeExplainer()
        async with slack_app(explainer) as (stub, url):
            stub.threads[first] = thread
            if refuse:
                stub.fail["conversations.replies"] = "missing_scope"
            headers = {"Content-Type": "application/json"}
            for n, question in enumerate(["is there a bug?", "and why?"]):
                await post_signed(url, mention_body(f"<@UBOT> {question}", ts=f"1700000000.00020{n}",
                                                    thread_ts=first, event_id=f"Ev{n}"), headers)
                await stub.wait_for(lambda: len(explainer.codes) == n + 1)
        return explainer, stub.posted("conversations.replies")

    with caplog.at_level(logging.WARNING, logger="mafioso.slack"):
        explainer, reads = asyncio.run(main(refuse=False))
    assert explainer.codes == ["x = 1", "x = 1"] and explainer.requests == ["is there a bug?", "and why?"]
    assert [(r["channel"], r["ts"]) for r in reads] == [("C1", first)]  # then remembered
    assert not caplog.records
    with caplog.at_level(logging.WARNING, logger="mafioso.slack"):
        explainer, reads = asyncio.run(main(refuse=True))
    assert explainer.codes == ["is there a bug?", "and why?"]  # as before: the words are all there is
    [warning] = caplog.records
    assert "missing_scope" in warning.getMessage() and "bug" not in warning.getMessage()


def test_a_follow_up_in_a_long_thread_finds_the_code_past_the_first_page():
    """Slack gives a thread oldest first, 200 messages a page: the bot read the first page only, so in a long
    thread a follow-up asked about the first code there, not the latest."""
    first = "1700000000.000100"
    chatter = [{"user": "U2", "text": f"message {n}", "ts": f"1700000001.{n:06d}", "thread_ts": first}
               for n in range(300)]
    thread = [{"user": "U1", "text": "<@UBOT> ```py\nx = 1\n```", "ts": first}, *chatter[:250],
              {"user": "U1", "text": "```py\ny = 2\n```", "ts": "1700000002.000000", "thread_ts": first},
              *chatter[250:]]

    async def main():
        explainer = FakeExplainer()
        async with slack_app(explainer) as (stub, url):
            stub.threads[first] = thread
            await post_signed(url, mention_body("<@UBOT> is there a bug?", ts="1700000003.000000",
                                                thread_ts=first), {"Content-Type": "application/json"})
            await stub.wait_for(lambda: explainer.codes)
        return explainer, stub.posted("conversations.replies")

    explainer, reads = asyncio.run(main())
    assert explainer.codes == ["y = 2"] and explainer.requests == ["is there a bug?"]
    assert [r.get("cursor") for r in reads] == [None, "200"]


def test_a_mention_slack_delivers_again_is_answered_once():
    """Slack retries an event it saw no acknowledgement for (X-Slack-Retry-Num); the same event id is the same
    question. Another event id is a new one."""
    async def main():
        explainer = FakeExplainer()
        async with slack_app(explainer) as (stub, url):
            json_type = {"Content-Type": "application/json"}
            statuses = [(await post_signed(url, mention_body("<@UBOT> x = 1"), json_type))[0],
                        (await post_signed(url, mention_body("<@UBOT> x = 1"),
                                           {**json_type, "X-Slack-Retry-Num": "1",
                                            "X-Slack-Retry-Reason": "http_timeout"}))[0]]
            await stub.wait_for(lambda: stub.posted())
            statuses.append((await post_signed(url, mention_body("<@UBOT> y = 2", event_id="Ev2"), json_type))[0])
            await stub.wait_for(lambda: len(stub.posted()) == 2)
            await asyncio.sleep(0.2)
        return statuses, explainer, stub

    statuses, explainer, stub = asyncio.run(main())
    assert statuses == [200, 200, 200]  # the retry is acknowledged too, or Slack would try again
    assert explainer.codes == ["x = 1", "y = 2"]
    assert len(stub.posted()) == 2


def test_other_bots_mentions_are_ignored():
    async def main():
        explainer = FakeExplainer()
        async with slack_app(explainer) as (stub, url):
            await post_signed(url, mention_body("<@UBOT> x = 1", bot_id="B777"), {"Content-Type": "application/json"})
            await asyncio.sleep(0.2)
        return explainer

    assert asyncio.run(main()).codes == []


def test_message_shortcut_answers_in_the_thread_and_long_answers_are_split():
    answer = " ".join(f"Sentence {i} is about `x{i}` and the family." for i in range(200))

    async def main():
        explainer = FakeExplainer(answer=answer)
        async with slack_app(explainer) as (stub, url):
            stub.rate_limit = 1  # the first chat.postMessage is rate-limited, then retried
            status, took = await post_signed(url, shortcut_body("```\nx = 1\n```", f"{stub.url}/response/1",
                                                                thread_ts="1699999999.000001"))
            await stub.wait_for(lambda: sum(len(p["text"]) for p in stub.posted()) >= len(answer) - 50)
        return status, took, explainer, stub

    status, took, explainer, stub = asyncio.run(main())
    assert status == 200 and took < 3.0
    assert explainer.codes == ["x = 1"]
    posts = stub.posted()
    assert len(posts) >= 3
    assert all(p["thread_ts"] == "1699999999.000001" and p["channel"] == "C1" for p in posts)
    assert all(len(p["text"]) <= SLACK_LIMIT for p in posts)
    assert " ".join(p["text"] for p in posts) == answer
    assert stub.rate_limit == 0


def test_shortcut_where_the_bot_is_not_a_member_answers_privately():
    async def main():
        async with slack_app(FakeExplainer()) as (stub, url):
            stub.fail["chat.postMessage"] = "not_in_channel"
            await post_signed(url, shortcut_body("x = 1", f"{stub.url}/response/7"))
            await stub.wait_for(lambda: len(stub.responses) == 2)
        return stub

    stub = asyncio.run(main())
    invite, answer = stub.responses
    assert invite["text"] == line("invite_me") and invite["response_type"] == "ephemeral"
    assert answer["text"].startswith("Listen up") and answer["response_type"] == "ephemeral"


def test_shortcut_on_a_busy_worker_apologises_in_the_thread():
    async def main():
        async with slack_app(FakeExplainer(error=WorkerBusy("256 waiting"))) as (stub, url):
            await post_signed(url, shortcut_body("x = 1", f"{stub.url}/response/1"))
            await stub.wait_for(lambda: stub.posted())
        return stub

    (post,) = asyncio.run(main()).posted()
    assert "seeing a lot of people" in post["text"] and "256" not in post["text"]


# ------------------------------------------------------------------------------------ start and text


def test_a_rejected_token_fails_fast_naming_the_variable():
    async def main():
        async with SlackStub() as stub:
            stub.fail["auth.test"] = "invalid_auth"
            bot = SlackBot(FakeExplainer(), SlackConfig(bot_token="xoxb-bad", signing_secret=SECRET, http=True,
                                                        api_url=f"{stub.url}/api/", port=free_port()))
            with pytest.raises(ConfigError, match="SLACK_BOT_TOKEN") as error:
                await bot.start()
            assert "xoxb-bad" not in str(error.value)

    asyncio.run(main())


def test_slack_text_conversion_and_escaping():
    assert slack_to_plain("if a &lt; b &amp;&amp; c &gt; d") == "if a < b && c > d"
    assert slack_to_plain("see <https://docs.python.org|the docs> and <https://x.org>") == \
        "see the docs and https://x.org"
    assert slack_to_plain("hey <@U123> in <#C1|general> <!here>") == "hey @U123 in #general @here"
    assert escape_mrkdwn("a < b & c > d <!channel>") == "a &lt; b &amp; c &gt; d &lt;!channel&gt;"


def test_socket_mode_acks_the_envelope_and_answers_on_the_response_url():
    async def main():
        explainer = FakeExplainer()
        async with SlackStub() as stub:
            bot = SlackBot(explainer, SlackConfig(bot_token="xoxb-test", app_token="xapp-test",
                                                  api_url=f"{stub.url}/api/"))
            await bot.start()
            try:
                command = {"command": "/explain", "text": "print(1)", "response_url": f"{stub.url}/response/1",
                           "team_id": "T1", "channel_id": "C1", "user_id": "U1", "trigger_id": "1.2.3"}
                await stub.envelopes.put({"envelope_id": "env-1", "type": "slash_commands", "payload": command,
                                          "accepts_response_payload": True})
                await stub.wait_for(lambda: stub.responses and stub.acks)
            finally:
                await bot.stop()
        return explainer, stub

    explainer, stub = asyncio.run(main())
    assert explainer.codes == ["print(1)"]
    assert stub.acks[0]["envelope_id"] == "env-1"
    assert stub.responses[0]["text"] == "Listen up, pal: print(1). Capisce?"
    assert "apps.connections.open" in [method for method, _ in stub.calls]


def test_manifest_declares_what_the_app_listens_to():
    import pathlib

    import yaml

    from mafioso.bot.slack_bot import COMMAND, SHORTCUT_ID

    manifest = yaml.safe_load((pathlib.Path(__file__).parents[2] / "slack" / "manifest.yml").read_text())
    features, settings = manifest["features"], manifest["settings"]
    assert [c["command"] for c in features["slash_commands"]] == [COMMAND]
    assert [(s["type"], s["callback_id"]) for s in features["shortcuts"]] == [("message", SHORTCUT_ID)]
    assert settings["event_subscriptions"]["bot_events"] == ["app_mention", "reaction_added"]
    assert settings["socket_mode_enabled"] is True and settings["interactivity"]["is_enabled"] is True
    assert {"app_mentions:read", "chat:write", "commands", "files:read"} <= set(manifest["oauth_config"]["scopes"]["bot"])


def test_a_taken_port_is_a_config_error_naming_the_setting():
    async def main():
        async with SlackStub() as stub:
            busy = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
            port = busy.sockets[0].getsockname()[1]
            bot = SlackBot(FakeExplainer(), SlackConfig(bot_token="xoxb-test", signing_secret=SECRET, http=True,
                                                        host="127.0.0.1", port=port, api_url=f"{stub.url}/api/"))
            try:
                with pytest.raises(ConfigError, match="SLACK_PORT"):
                    await bot.start()
            finally:
                busy.close()
                await busy.wait_closed()

    asyncio.run(main())


# -------------------------------------------------------------------------------------------- ratings


def reaction_body(reaction: str, user: str, ts: str, event_id: str) -> str:
    event = {"type": "reaction_added", "user": user, "reaction": reaction, "item_user": "UBOT",
             "item": {"type": "message", "channel": "C1", "ts": ts}, "event_ts": "1700000009.000100"}
    return json.dumps({"token": "legacy", "team_id": "T1", "api_app_id": "A1", "event": event,
                       "type": "event_callback", "event_id": event_id, "event_time": 1700000009,
                       "authorizations": [{"team_id": "T1", "user_id": "UBOT", "is_bot": True}]})


def test_a_thumbs_reaction_on_the_bots_answer_is_a_rating(tmp_path):
    from mafioso.core.feedback import FeedbackStore
    from mafioso.worker.service import Worker
    from tests.worker.helpers import FakeEngine, worker_config

    store = FeedbackStore.open(tmp_path / "f.db")
    as_json = {"Content-Type": "application/json"}

    async def main():
        worker = Worker(FakeEngine(), worker_config(), feedback=store)
        await worker.start()
        try:
            async with slack_app(worker, feedback=store) as (stub, url):
                await post_signed(url, mention_body("<@UBOT> x = 1"), as_json)
                await stub.wait_for(lambda: [c for c in stub.calls if c[0] == "chat.stopStream"])  # streamed
                posted_ts = "1700000001.000200"  # what the stand-in answers chat.startStream with
                await post_signed(url, reaction_body("-1", "U7RATER", posted_ts, "Ev8"), as_json)
                await stub.wait_for(lambda: store.rated_answers())  # rated down, before the change of mind
                await post_signed(url, reaction_body("+1::skin-tone-3", "U7RATER", posted_ts, "Ev9"), as_json)
                await post_signed(url, reaction_body("pizza", "U7RATER", posted_ts, "Ev10"), as_json)
                await post_signed(url, reaction_body("+1", "U7RATER", "1.2", "Ev11"), as_json)  # not ours
                for _ in range(100):  # Bolt acks events first, then runs the listener
                    rows = store.rated_answers()
                    if rows and rows[0]["ups"]:
                        break
                    await asyncio.sleep(0.02)
        finally:
            await worker.stop()

    asyncio.run(main())
    [row] = store.rated_answers()
    assert (row["ups"], row["downs"], row["platform"], row["code"].strip()) == (1, 0, "slack", "x = 1")
    store.close()
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"U7RATER" not in data


# ------------------------------------------------------------------------------------------- streaming


class _Ticks:
    """A clock that moves 0.6 s each time it is read: every other delta may be sent on."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        self.now += 0.6
        return self.now


def _streaming_app(explainer, **cfg):
    """slack_app with the bot's clock ticking (the throttle sees time pass between deltas)."""
    import mafioso.bot.slack_bot as slack_bot

    ticks = _Ticks()
    original = slack_bot.Throttle

    class Ticking(original):
        def __init__(self, interval, clock=None):
            super().__init__(interval, ticks)

    slack_bot.Throttle = Ticking
    return slack_app(explainer, **cfg), lambda: setattr(slack_bot, "Throttle", original)


@pytest.mark.parametrize("native", [True, False])
def test_a_mention_is_streamed_into_its_thread_natively_or_by_throttled_updates(native, monkeypatch):
    from slack_sdk.web.async_client import AsyncWebClient

    from tests.bot.helpers import StreamingExplainer

    if not native:
        monkeypatch.delattr(AsyncWebClient, "chat_stream")
    deltas = ["Listen up.", " It adds.", " Two <numbers>.", " Like the books.", " Capisce?"]
    context, restore = _streaming_app(StreamingExplainer(deltas))

    async def main():
        try:
            async with context as (stub, url):
                status, _ = await post_signed(url, mention_body("<@UBOT> ```py\nprint(1 + 2)\n```"),
                                              {"Content-Type": "application/json"})
                done = "chat.stopStream" if native else "chat.update"
                await stub.wait_for(lambda: [c for c in stub.calls if c[0] == done and "Capisce" in str(c[1])])
                return status, stub.calls
        finally:
            restore()

    status, calls = asyncio.run(main())
    assert status == 200
    calls = [(method, data) for method, data in calls if method.startswith("chat.")]
    if native:
        methods = [method for method, _ in calls]
        assert methods[0] == "chat.startStream" and methods[-1] == "chat.stopStream"
        assert calls[0][1]["thread_ts"] == "1700000000.000100" and calls[0][1]["recipient_user_id"] == "U1"
        assert calls[0][1]["recipient_team_id"] == "T1"
        texts = "".join(chunk["text"] for _, data in calls for chunk in data.get("chunks", []))
        assert texts == "Listen up. It adds. Two &lt;numbers&gt;. Like the books. Capisce?"
        assert 2 <= len(calls) < len(deltas) + 1  # throttled: fewer calls than deltas
    else:
        assert calls[0][0] == "chat.postMessage" and calls[0][1]["text"] == "⏳"
        updates = [data["text"] for method, data in calls if method == "chat.update"]
        assert updates[-1] == "Listen up. It adds. Two &lt;numbers&gt;. Like the books. Capisce?"
        assert all(text.endswith("⏳") for text in updates[:-1]) and len(updates) < len(deltas)


def test_the_message_shortcut_streams_into_the_messages_thread(monkeypatch):
    from slack_sdk.web.async_client import AsyncWebClient

    from tests.bot.helpers import StreamingExplainer

    monkeypatch.delattr(AsyncWebClient, "chat_stream")
    context, restore = _streaming_app(StreamingExplainer(["Listen up.", " It adds.", " Capisce?"]))

    async def main():
        try:
            async with context as (stub, url):
                body = shortcut_body("```py\nprint(1 + 2)\n```", f"{stub.url}/response/9", thread_ts="1699.1")
                assert (await post_signed(url, body))[0] == 200
                await stub.wait_for(lambda: [c for c in stub.calls
                                             if c[0] == "chat.update" and c[1]["text"].endswith("Capisce?")])
                return stub
        finally:
            restore()

    stub = asyncio.run(main())
    chat = [(method, data) for method, data in stub.calls if method.startswith("chat.")]
    assert chat[0][0] == "chat.postMessage" and chat[0][1]["thread_ts"] == "1699.1"
    assert stub.responses == []


@pytest.mark.parametrize("refusing", ["chat.startStream", "chat.appendStream", "chat.stopStream",
                                      "chat.update", "chat.postMessage"])
def test_a_shortcut_where_the_bot_is_not_a_member_gets_the_streamed_answer_privately_asked_once(refusing,
                                                                                                monkeypatch):
    """Slack says not_in_channel to a native stream only at its first append (chat.startStream), a later one, or
    at stop, when the answer is under way: that answer goes through the response URL, not a second one."""
    from slack_sdk.web.async_client import AsyncWebClient

    from mafioso.bot.extract import split_text
    from tests.bot.helpers import StreamingExplainer

    if refusing in ("chat.update", "chat.postMessage"):  # the edited-message path: refused before or mid-answer
        monkeypatch.delattr(AsyncWebClient, "chat_stream")
    deltas = ["Listen up.", *(f" Line {i} adds `x{i}` & <y{i}> for the family." for i in range(120)), " Capisce?"]
    answer = "".join(deltas)
    explainer = StreamingExplainer(deltas)
    context, restore = _streaming_app(explainer)
    expected = [escape_mrkdwn(chunk) for chunk in split_text(answer, SLACK_LIMIT)]

    async def main():
        try:
            async with context as (stub, url):
                stub.fail[refusing] = "not_in_channel"
                assert (await post_signed(url, shortcut_body("```py\nprint(1 + 2)\n```", f"{stub.url}/response/4"))
                        )[0] == 200
                await stub.wait_for(lambda: len(stub.responses) >= 1 + len(expected))
                await asyncio.sleep(0.2)  # nothing more comes
                return stub
        finally:
            restore()

    stub = asyncio.run(main())
    assert explainer.codes == ["print(1 + 2)"]  # the worker was asked once
    assert refusing in [method for method, _ in stub.calls]
    invite, *chunks = stub.responses
    assert invite["text"] == line("invite_me")
    assert [r["text"] for r in chunks] == expected and len(expected) >= 2
    assert all(r["response_type"] == "ephemeral" and r["replace_original"] is False for r in stub.responses)


def test_a_refusal_where_the_bot_is_not_a_member_stays_private_and_the_worker_is_asked_once():
    from tests.bot.helpers import StreamingExplainer

    explainer = StreamingExplainer(["never"], error=WorkerBusy("256 waiting"))
    context, restore = _streaming_app(explainer)

    async def main():
        try:
            async with context as (stub, url):
                stub.fail["chat.startStream"] = "not_in_channel"  # nothing was appended: the stop starts it
                await post_signed(url, shortcut_body("x = 1", f"{stub.url}/response/5"))
                await stub.wait_for(lambda: len(stub.responses) >= 2)
                await asyncio.sleep(0.2)
                return stub
        finally:
            restore()

    stub = asyncio.run(main())
    assert explainer.codes == ["x = 1"]
    invite, apology = stub.responses
    assert invite["text"] == line("invite_me") and "seeing a lot of people" in apology["text"]
    assert "256" not in apology["text"] and apology["response_type"] == "ephemeral"
    assert not stub.posted("chat.postMessage")  # nothing public
