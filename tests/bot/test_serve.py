"""``mafioso serve``: settings loaded once from env/flags, platforms chosen by credentials, wiring to a worker,
graceful shutdown on SIGTERM. Slack runs for real in HTTP mode against the loopback Slack stand-in."""

from __future__ import annotations

import asyncio
import os
import signal

import aiohttp
import pytest
from aiohttp import web

from mafioso.bot.serve import load_settings, serve
from mafioso.cli import make_parser
from mafioso.core.config import DiscordConfig, SlackConfig
from mafioso.core.errors import ConfigError
from tests.bot.helpers import FakeExplainer
from tests.bot.slack_stub import SlackStub, slack_signature_headers, slash_command_body
from tests.helpers import free_port, serve_loopback

SECRET = "serve-test-signing-secret"


pytestmark = pytest.mark.usefixtures("no_chat_env")  # the developer's variables and .env stay out


def settings(*argv: str):
    return load_settings(make_parser().parse_args(["serve", *argv]))


# --------------------------------------------------------------------------------------------- settings


def test_no_credentials_is_a_config_error_naming_the_variables():
    with pytest.raises(ConfigError) as error:
        settings()
    for name in ("DISCORD_TOKEN", "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET"):
        assert name in str(error.value)


def test_platforms_follow_the_credentials(monkeypatch):
    monkeypatch.setenv("DISCORD_TOKEN", "MTIz.abc.def")
    assert settings().platforms == ("discord",)
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-1")
    assert settings().platforms == ("discord", "slack")
    assert settings("--platform", "slack").platforms == ("slack",)
    monkeypatch.delenv("DISCORD_TOKEN")
    with pytest.raises(ConfigError, match="DISCORD_TOKEN"):
        settings("--platform", "discord")


def test_env_file_and_flags_are_layered(monkeypatch, tmp_path):
    (tmp_path / ".env").write_text("SLACK_BOT_TOKEN=xoxb-from-dotenv\nSLACK_SIGNING_SECRET=s3cret\n"
                                   "DISCORD_ALLOWED_CHANNELS=11,12\nMAFIOSO_MAX_INPUT_CHARS=900\n")
    monkeypatch.setenv("SLACK_PORT", "4000")
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "DISCORD_ALLOWED_CHANNELS", "MAFIOSO_MAX_INPUT_CHARS"):
        monkeypatch.setenv(name, "")  # so monkeypatch restores what load_dotenv sets
        monkeypatch.delenv(name)
    s = settings("--slack-http", "--port", "4567", "--worker-url", "http://127.0.0.1:8000")
    assert s.slack.bot_token == "xoxb-from-dotenv" and s.slack.http and s.slack.port == 4567
    assert s.discord.allowed_channels == [11, 12] and s.worker.max_input_chars == 900
    assert s.serve.worker_url == "http://127.0.0.1:8000"
    assert "xoxb-from-dotenv" not in repr(s) and "s3cret" not in repr(s)


@pytest.mark.parametrize("env, variable", [
    ({"SLACK_BOT_TOKEN": "xoxb-1"}, "SLACK_APP_TOKEN"),  # Socket Mode without an app token
    ({"SLACK_BOT_TOKEN": "xoxp-user-token", "SLACK_APP_TOKEN": "xapp-1"}, "SLACK_BOT_TOKEN"),
    ({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xoxb-1"}, "SLACK_APP_TOKEN"),
    ({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_HTTP": "true"}, "SLACK_SIGNING_SECRET"),
    ({"SLACK_APP_TOKEN": "xapp-1"}, "SLACK_BOT_TOKEN"),
    ({"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1", "SLACK_RESPONSE_TYPE": "loud"},
     "SLACK_RESPONSE_TYPE"),
    ({"DISCORD_TOKEN": "not a token"}, "DISCORD_TOKEN"),
    ({"DISCORD_TOKEN": "a.b.c", "DISCORD_COOLDOWN": "-1"}, "DISCORD_COOLDOWN"),
    ({"DISCORD_TOKEN": "a.b.c", "DISCORD_ALLOWED_USERS": "0"}, "DISCORD_ALLOWED_USERS"),
    ({"DISCORD_TOKEN": "a.b.c", "MAFIOSO_COMPILE_SCOPE": "model"}, "MAFIOSO_COMPILE_SCOPE"),
])
def test_invalid_settings_name_the_variable_to_fix(monkeypatch, env, variable):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=variable) as error:
        settings()
    assert "xoxb-1" not in str(error.value) and "a.b.c" not in str(error.value)


def test_config_classes_normalise_and_hide_secrets():
    slack = SlackConfig(bot_token="xoxb-1", app_token="xapp-1", api_url="http://127.0.0.1:9/api")
    assert slack.api_url == "http://127.0.0.1:9/api/"
    assert "xoxb-1" not in repr(slack) and "xapp-1" not in repr(slack)
    assert "t.o.k" not in repr(DiscordConfig(token="t.o.k"))


# ---------------------------------------------------------------------------------------------- running


async def _signed_command(url: str, stub: SlackStub, text: str, n: int) -> int:
    body = slash_command_body(text, f"{stub.url}/response/{n}")
    headers = {"Content-Type": "application/x-www-form-urlencoded", **slack_signature_headers(SECRET, body)}
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=body, headers=headers) as response:
            return response.status


async def _wait_listening(port: int) -> None:
    for _ in range(300):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.01)
    raise AssertionError(f"nothing listens on {port}")


def _slack_env(monkeypatch, stub: SlackStub, port: int) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-serve")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", SECRET)
    monkeypatch.setenv("SLACK_API_URL", f"{stub.url}/api/")
    monkeypatch.setenv("SLACK_HOST", "127.0.0.1")


def test_serve_runs_slack_over_http_with_a_remote_worker_and_stops_on_sigterm(monkeypatch):
    """The wiring end to end: --worker-url → the real WorkerClient → a worker's HTTP API on loopback."""
    seen = []

    async def fake_worker_api(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append((request.headers.get("Authorization"), body["code"]))
        return web.json_response({"explanation": "The loop counts to three, pal. Capisce?", "tokens": 9,
                                  "latency_s": 0.1, "finished": True})

    async def main():
        app = web.Application()
        app.router.add_post("/v1/explain", fake_worker_api)
        runner, worker_url = await serve_loopback(app)
        monkeypatch.setenv("MAFIOSO_API_KEY", "worker-key")
        async with SlackStub() as stub:
            _slack_env(monkeypatch, stub, port := free_port())
            s = settings("--slack-http", "--port", str(port), "--worker-url", worker_url)
            server = asyncio.create_task(serve(s))
            await _wait_listening(port)
            status = await _signed_command(f"http://127.0.0.1:{port}/slack/events", stub,
                                           "for i in range(3): print(i)", 1)
            await stub.wait_for(lambda: stub.responses)
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.wait_for(server, 5)  # returns cleanly: graceful shutdown
            with pytest.raises(OSError):
                await asyncio.open_connection("127.0.0.1", port)  # the Slack server is closed
        await runner.cleanup()
        return status, stub

    status, stub = asyncio.run(main())
    assert status == 200
    assert seen == [("Bearer worker-key", "for i in range(3): print(i)")]
    assert stub.responses[0]["text"] == "The loop counts to three, pal. Capisce?"


def test_a_platform_that_cannot_start_stops_serve_with_its_config_error(monkeypatch):
    async def main():
        async with SlackStub() as stub:
            stub.fail["auth.test"] = "invalid_auth"
            _slack_env(monkeypatch, stub, port := free_port())
            s = settings("--slack-http", "--port", str(port))
            with pytest.raises(ConfigError, match="SLACK_BOT_TOKEN"):
                await asyncio.wait_for(serve(s, FakeExplainer()), 5)

    asyncio.run(main())


def test_env_example_lists_every_variable_with_a_comment_and_valid_defaults():
    import dataclasses
    import pathlib

    from dotenv import dotenv_values

    from mafioso.core.config import build
    from mafioso.core.settings import PREFIXES

    path = pathlib.Path(__file__).parents[2] / ".env.example"
    lines = path.read_text().splitlines()
    values = dotenv_values(path)
    for cls, prefix in PREFIXES.items():  # every section the loader reads
        names = {prefix + f.name.upper(): f.name for f in dataclasses.fields(cls)}
        assert set(names) <= set(values), set(names) - set(values)
        build(cls, {field: values[name] for name, field in names.items() if values[name]})  # the values are valid
    for name in values:  # each variable sits under a comment (shared by a group of related ones at most)
        index = lines.index(next(line for line in lines if line.startswith(name + "=")))
        above = next(line for line in reversed(lines[:index]) if "=" not in line or line.startswith("#"))
        assert above.startswith("#"), name
