"""Chat adapters pick the persona per channel (config) and per command (``persona:noir``)."""

import asyncio

import aiohttp
import pytest

from mafioso.bot.personas import PersonaExplainer, choose, parse_channel_personas, split_persona_option, use_persona
from mafioso.core.errors import ConfigError
from tests.bot.test_discord import make_bot
from tests.bot.test_slack import FORM, SECRET, post_signed, slack_app
from tests.bot.discord_fakes import discord_interaction
from tests.bot.helpers import FakeExplainer
from tests.bot.slack_stub import slack_signature_headers, slash_command_body


def personas():
    mafioso, noir = FakeExplainer(answer="Listen, pal."), FakeExplainer(answer="The case was cold.")
    return PersonaExplainer({"mafioso": mafioso, "noir": noir}, "mafioso"), mafioso, noir


def test_options_and_channel_maps_parse():
    assert split_persona_option("persona:noir x = 1") == ("noir", "x = 1")
    assert split_persona_option("PERSONA=noir\nx") == ("noir", "x")
    assert split_persona_option("x = 1  # persona:noir") == (None, "x = 1  # persona:noir")
    assert parse_channel_personas("C1=noir, C2 = mafioso", "X") == {"C1": "noir", "C2": "mafioso"}
    with pytest.raises(ConfigError, match="SLACK_CHANNEL_PERSONAS"):
        parse_channel_personas("C1", "SLACK_CHANNEL_PERSONAS")


def test_each_call_goes_to_the_persona_in_effect_and_a_channel_map_is_checked():
    explainer, mafioso, noir = personas()

    async def ask(name):
        use_persona(name)
        return (await explainer.explain("x = 1")).text

    async def main():
        return await asyncio.gather(ask("noir"), ask(None), ask("mafioso"))

    assert asyncio.run(main()) == ["The case was cold.", "Listen, pal.", "Listen, pal."]
    assert choose(explainer, {"C1": "noir"}, "C1") == "noir" and choose(explainer, {}, "C1") is None
    with pytest.raises(ValueError, match="unknown persona 'pirate'; here: mafioso, noir"):
        choose(explainer, {}, "C1", "pirate")
    with pytest.raises(ConfigError, match="X: pirate not served"):
        explainer.check_channels({"C1": "pirate"}, "X")


def test_slack_command_names_the_persona_else_the_channel_gives_it():
    async def main(text, **cfg):
        explainer, mafioso, noir = personas()
        async with slack_app(explainer, **cfg) as (stub, url):
            await post_signed(url, slash_command_body(text, f"{stub.url}/response/1"))
            await stub.wait_for(lambda: stub.responses)
        return stub.responses[0]["text"], mafioso.codes, noir.codes

    assert asyncio.run(main("persona:noir x = 1")) == ("The case was cold.", [], ["x = 1"])
    assert asyncio.run(main("x = 1")) == ("Listen, pal.", ["x = 1"], [])
    assert asyncio.run(main("x = 1", channel_personas="C1=noir")) == ("The case was cold.", [], ["x = 1"])
    assert asyncio.run(main("persona:mafioso x = 1", channel_personas="C1=noir"))[1] == ["x = 1"]


def test_slack_refuses_an_unknown_persona_by_name():
    async def main():
        explainer, mafioso, noir = personas()
        async with slack_app(explainer) as (stub, url):
            body = slash_command_body("persona:pirate x = 1", f"{stub.url}/response/1")
            headers = {**FORM, **slack_signature_headers(SECRET, body)}
            async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as reply:
                return await reply.text(), mafioso.codes + noir.codes

    text, codes = asyncio.run(main())
    assert "unknown persona 'pirate'" in text and codes == []


def test_discord_explain_takes_a_persona_option_and_the_channel_map():
    def ask(persona=None, **cfg):
        explainer, mafioso, noir = personas()
        bot = make_bot(explainer, **cfg)
        interaction = discord_interaction()
        asyncio.run(bot.tree.get_command("explain").callback(interaction, code="x = 1", persona=persona))
        return mafioso.codes, noir.codes, interaction

    assert ask("noir")[:2] == ([], ["x = 1"])
    assert ask()[:2] == (["x = 1"], [])
    channel = discord_interaction().channel_id
    assert ask(channel_personas=f"{channel}=noir")[:2] == ([], ["x = 1"])
    mafioso_codes, noir_codes, interaction = ask("pirate")
    assert mafioso_codes == noir_codes == []
    assert "unknown persona 'pirate'" in interaction.response.send_message.call_args.args[0]


def test_serve_gives_each_served_name_its_client_in_its_personas_prompt(monkeypatch, no_chat_env):
    from mafioso.bot.serve import _start_explainer
    from tests.bot.test_serve import settings

    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-test")
    monkeypatch.setenv("MAFIOSO_ADAPTERS", "noir=/adapters/noir")
    monkeypatch.setenv("SLACK_CHANNEL_PERSONAS", "C1=noir")
    explainer = asyncio.run(_start_explainer(settings("--worker-url", "http://127.0.0.1:9", "--worker-api",
                                                      "openai")))
    assert explainer.names == ["mafioso", "noir"]
    noir = explainer.explainers["noir"]
    assert noir.model == "noir" and "detective" in noir.completion_body("x = 1")["prompt"]
    assert "detective" not in explainer.explainers["mafioso"].completion_body("x = 1")["prompt"]
    # each renders the prompt format of the adapter shipped under its name (both trained before format 2)
    assert noir.prompt_format == explainer.explainers["mafioso"].prompt_format == 1
    monkeypatch.setenv("SLACK_CHANNEL_PERSONAS", "C1=pirate")
    with pytest.raises(ConfigError, match="SLACK_CHANNEL_PERSONAS: pirate not served"):
        asyncio.run(_start_explainer(settings("--worker-url", "http://127.0.0.1:9")))


def test_the_adapters_own_lines_follow_the_persona_in_effect():
    from mafioso.core.errors import WorkerBusy
    from mafioso.prompts.lines import line

    def busy_personas():
        return PersonaExplainer({"mafioso": FakeExplainer(error=WorkerBusy("queue full")),
                                 "noir": FakeExplainer(error=WorkerBusy("queue full"), persona="noir")}, "mafioso")

    def discord(code, persona):
        bot = make_bot(busy_personas())
        interaction = discord_interaction()
        asyncio.run(bot.tree.get_command("explain").callback(interaction, code=code, persona=persona))
        return interaction

    said = discord("x = 1", "noir").followup.send.call_args.args[0]
    assert said == line("busy", "noir") and said != line("busy")
    assert discord("x = 1", None).followup.send.call_args.args[0] == line("busy")
    assert discord(None, "noir").response.send_modal.call_args.args[0].title == line("form_title", "noir")
    refused = discord("x = 1", "pirate").response.send_message.call_args.args[0]  # no such voice: the default's
    assert refused.startswith(line("who_is_that", detail="")) and "pirate" in refused

    async def slack(text):
        async with slack_app(busy_personas(), channel_personas="C1=noir") as (stub, url):
            body = slash_command_body(text, f"{stub.url}/response/1")
            headers = {**FORM, **slack_signature_headers(SECRET, body)}
            async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as reply:
                return await reply.text()

    assert line("no_code", "noir").split("(")[0].strip() in asyncio.run(slack("   "))  # the channel's persona
    assert "Ya gotta show me the goods" in asyncio.run(slack("persona:mafioso"))
