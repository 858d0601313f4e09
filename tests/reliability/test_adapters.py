"""The chat adapters in front of a real worker (issue 19): the Slack app (HTTP mode, a loopback stand-in for
Slack) and the Discord bot (spec_set discord.py mocks), each calling the worker's HTTP app on loopback through
:class:`mafioso.worker.client.WorkerClient`, the FakeEngine behind it. Each case sets up a fault, sends one message and
asserts what the user was told, whether the worker was asked, and that the next message is answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import pytest

from mafioso.worker.client import WorkerClient
from mafioso.worker.service import Worker
from tests.bot.test_discord import FENCED, make_bot, replies
from tests.bot.test_slack import FORM, mention_body, post_signed, slack_app
from tests.bot.discord_fakes import discord_attachment, discord_channel, discord_message, discord_user
from tests.bot.slack_stub import slash_command_body
from tests.helpers import free_port
from tests.worker.helpers import FakeEngine, serving, worker_config

JSON = {"Content-Type": "application/json"}


@contextlib.asynccontextmanager
async def worker_behind(engine: FakeEngine, **cfg):
    """The real worker HTTP app on loopback and a WorkerClient to it; yields (client, worker)."""
    settings = worker_config(max_input_chars=1000, **cfg)
    worker = Worker(engine, settings)
    async with serving(worker, settings) as url, WorkerClient(url, timeout=5.0) as client:
        yield client, worker


@dataclass(frozen=True)
class Case:
    """A message sent while the worker is in some state, and what the user must read."""

    name: str
    text: str  # the code sent (Slack: the /explain text; Discord: the message)
    says: str  # a part of the reply the user gets ("" = no reply at all)
    engine: dict = field(default_factory=dict)
    cfg: dict = field(default_factory=dict)
    state: str = ""  # "down": the worker is unreachable; "stopped": it refuses; "busy": its queue is full
    asked: bool = True  # whether the engine is asked to explain


SLACK = [
    Case("answered through the worker", "x = 1", "explained x = 1"),
    Case("too large", "x" * 1001, "That's a lotta code", asked=False),
    Case("binary", "x = 1\u0000\u0001", "bag of bytes", asked=False),
    Case("worker timed out", "x = 1", "cannoli went stale", engine={"tokens": 1000, "token_delay": 0.01},
         cfg={"request_timeout": 0.3}),
    Case("worker busy", "x = 1", "seeing a lot of people", state="busy", asked=False),
    Case("worker stopped", "x = 1", "ain't takin' visitors", state="stopped", asked=False),
    Case("worker down", "x = 1", "ain't takin' visitors", state="down", asked=False),
    Case("worker's engine failing", "x = 1", "back room", engine={"fail": True}),
    Case("8,000 backticks", "`" * 8000, "That's a lotta code", asked=False),
]


async def _slack(case: Case):
    engine = FakeEngine(**case.engine)
    async with worker_behind(engine, **case.cfg) as (client, worker):
        if case.state == "down":
            client = WorkerClient(f"http://127.0.0.1:{free_port()}")
        if case.state == "stopped":
            await worker.stop()
        if case.state == "busy":
            worker._cold_start_limit = 0  # before any answer: nothing more is admitted
        async with slack_app(client) as (stub, url):
            started = time.monotonic()
            status, _ = await post_signed(url, slash_command_body(case.text, f"{stub.url}/response/1"))
            await stub.wait_for(lambda: stub.responses)
            took = time.monotonic() - started
            if case.state == "stopped":
                await worker.start()
            worker._cold_start_limit = 8
            engine.fail, engine.tokens = False, 3
            worker.cfg.request_timeout = 5.0
            survived = engine.seen()[:]
            if case.state != "down":
                await post_signed(url, slash_command_body("y = 2", f"{stub.url}/response/2"))
                await stub.wait_for(lambda: len(stub.responses) == 2)
        if case.state == "down":
            await client.close()
    return status, stub.responses, survived, took


@pytest.mark.parametrize("case", SLACK, ids=[c.name for c in SLACK])
def test_slack_tells_the_user_in_character_and_keeps_serving(case):
    status, responses, asked, took = asyncio.run(_slack(case))
    assert status == 200 and took < 3.0
    assert case.says in responses[0]["text"]
    assert "Traceback" not in responses[0]["text"] and "127.0.0.1" not in responses[0]["text"]
    assert bool(asked) is case.asked
    if case.state != "down":
        assert responses[1]["text"].startswith("explained y = 2")


def test_slack_forged_stale_and_replayed_requests_never_reach_the_worker():
    async def main():
        engine = FakeEngine()
        async with worker_behind(engine) as (client, _), slack_app(client) as (stub, url):
            body = slash_command_body("x = 1", f"{stub.url}/response/1")
            forged, _ = await post_signed(url, body, secret="not-the-secret")
            stale, _ = await post_signed(url, body, timestamp=int(time.time()) - 600)
            first, _ = await post_signed(url, body)
            again, _ = await post_signed(url, body)
            await stub.wait_for(lambda: stub.responses)
            await asyncio.sleep(0.1)
        return (forged, stale, first, again), engine.seen(), stub.responses

    statuses, seen, responses = asyncio.run(main())
    assert statuses == (401, 401, 200, 200) and seen == ["x = 1"] and len(responses) == 1


def test_slack_a_mention_of_backticks_does_not_hold_the_next_request():
    """Issue 19: a mention with 8,000 backticks froze the next request for 18 s."""
    async def main():
        engine = FakeEngine()
        async with worker_behind(engine) as (client, _), slack_app(client) as (stub, url):
            started = time.monotonic()
            await post_signed(url, mention_body("<@UBOT> " + "`" * 8000, event_id="Ev1"), JSON)
            status, _ = await post_signed(url, slash_command_body("x = 1", f"{stub.url}/response/1"), FORM)
            await stub.wait_for(lambda: stub.responses)
            return status, time.monotonic() - started

    status, took = asyncio.run(main())
    assert status == 200 and took < 3.0


DISCORD = [
    Case("answered through the worker", FENCED, "explained def add"),
    Case("worker busy", FENCED, "seeing a lot of people", state="busy", asked=False),
    Case("worker timed out", FENCED, "cannoli went stale", engine={"tokens": 1000, "token_delay": 0.01},
         cfg={"request_timeout": 0.3}),
    Case("worker down", FENCED, "ain't takin' visitors", state="down", asked=False),
    Case("too large", "```python\n" + "x" * 1001 + "\n```", "1000 characters", asked=False),
    Case("a stranger's channel", FENCED, "", state="stranger", asked=False),
    Case("4,000 backticks", "`" * 4000, "", asked=False),
]


async def _discord(case: Case):
    engine = FakeEngine(**case.engine)
    async with worker_behind(engine, **case.cfg) as (client, worker):
        if case.state == "down":
            client = WorkerClient(f"http://127.0.0.1:{free_port()}")
        if case.state == "busy":
            worker._cold_start_limit = 0
        bot = make_bot(client, allowed_channels=[2])
        bot.max_code_chars = 1000  # as the worker's max_input_chars
        channel = discord_channel(3 if case.state == "stranger" else 2)
        message = discord_message(case.text, channel=channel)
        started = time.monotonic()
        await bot.on_message(message)
        took = time.monotonic() - started
        asked = engine.seen()[:]
        worker._cold_start_limit = 8
        engine.tokens = 3
        worker.cfg.request_timeout = 5.0
        after = discord_message(FENCED, channel=discord_channel(2))
        if case.state != "down":
            await bot.on_message(after)
        if case.state == "down":
            await client.close()
    return replies(message), asked, replies(after), took


@pytest.mark.parametrize("case", DISCORD, ids=[c.name for c in DISCORD])
def test_discord_tells_the_user_in_character_and_keeps_serving(case):
    said, asked, after, took = asyncio.run(_discord(case))
    assert took < 3.0
    if case.says:
        (reply,) = said
        assert case.says in reply and "127.0.0.1" not in reply
    else:
        assert said == []
    assert bool(asked) is case.asked
    if case.state != "down":
        assert after and after[0].startswith("explained def add")


def test_discord_an_oversized_attachment_is_refused_unread():
    async def main():
        engine = FakeEngine()
        async with worker_behind(engine) as (client, _):
            bot = make_bot(client)
            big = discord_attachment("big.py", b"x = 1\n", size=bot.max_code_chars + 1)
            message = discord_message("please", attachments=[big], author=discord_user())
            await bot.on_message(message)
            return replies(message), big, engine.seen()

    said, big, seen = asyncio.run(main())
    big.read.assert_not_awaited()
    assert seen == [] and "too heavy" in said[0]
