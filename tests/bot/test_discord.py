"""The Discord adapter's handlers, driven with discord.py objects (spec_set mocks of real ones) and a fake
Explainer at the boundary."""

from __future__ import annotations

import asyncio
import re

import discord
import pytest

from mafioso.bot.discord_bot import DISCORD_LIMIT, CodeModal, MafiosoBot
from mafioso.prompts.lines import line
from mafioso.bot.streaming import IN_PROGRESS
from mafioso.core.config import DiscordConfig
from mafioso.core.errors import InputRejected, WorkerBusy, WorkerTimeout, WorkerUnavailable
from tests.bot.discord_fakes import (discord_attachment, discord_channel, discord_client_user, discord_guild,
                                     discord_interaction, discord_message, discord_user, reply_reference)
from tests.bot.helpers import FakeExplainer, StreamingExplainer
from tests.helpers import serve_loopback

BOT_ID = 9000
CODE = "def add(a, b):\n    return a + b"
FENCED = f"what does this do?\n```python\n{CODE}\n```"


class Clock:
    """A hand-driven monotonic clock for the cooldown."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_bot(explainer=None, clock=None, **cfg) -> MafiosoBot:
    """A MafiosoBot as it is once logged in (its own user known), without a gateway connection."""
    cfg.setdefault("cooldown", 0)
    cfg.setdefault("listen_to_messages", True)
    bot = MafiosoBot(explainer or FakeExplainer(), DiscordConfig(**cfg), clock=clock or Clock())
    bot._connection.user = discord_client_user(BOT_ID)  # what READY would set
    return bot


def run(coro):
    return asyncio.run(coro)


def replies(message) -> list[str]:
    """Everything the bot sent in answer to a message: the reply (as last edited), then follow-ups in the channel."""
    sent = [c.args[0] for c in message.reply.await_args_list]
    edits = message.reply.return_value.edit.await_args_list if sent else []
    if edits:  # a streamed reply: what it says after its last edit
        sent[-1] = edits[-1].kwargs["content"]
    return sent + [c.args[0] for c in message.channel.send.await_args_list]


def followups(interaction) -> list[str]:
    return [c.args[0] for c in interaction.followup.send.await_args_list]


# ------------------------------------------------------------------------------------------- messages


def test_message_with_a_code_block_gets_a_reply_while_typing():
    explainer = FakeExplainer()
    bot = make_bot(explainer)
    message = discord_message(FENCED)
    run(bot.on_message(message))
    assert explainer.codes == [CODE]
    message.channel.typing.assert_called_once()
    kwargs = message.reply.await_args.kwargs
    assert kwargs["mention_author"] is False
    assert kwargs["allowed_mentions"].to_dict() == discord.AllowedMentions.none().to_dict()
    assert replies(message) == [f"Listen up, pal: {CODE}. Capisce?"]


@pytest.mark.parametrize("streams", [False, True])
def test_the_question_around_the_code_is_asked_with_it(streams):
    """"@Mafioso is there a bug?" with a fenced block: the question goes with the code (it was dropped, and the
    code only explained); beside a .py file the whole text is the question."""
    explainer = StreamingExplainer(["Listen up. ", "Capisce?"]) if streams else FakeExplainer()
    bot = make_bot(explainer)
    me = [discord_client_user(BOT_ID)]
    run(bot.on_message(discord_message(f"<@{BOT_ID}> is there a bug?\n```py\n{CODE}\n```", mentions=me)))
    run(bot.on_message(discord_message(f"<@{BOT_ID}> why does it crash?", mentions=me,
                                       attachments=[discord_attachment("mob.py", b"x = 1\n")])))
    run(bot.on_message(discord_message(FENCED)))
    assert explainer.codes == [CODE, "x = 1", CODE]
    assert explainer.requests == ["is there a bug?", "why does it crash?", "what does this do?"]


def test_a_reply_with_a_question_is_answered_about_the_code_it_replies_to():
    """"@Mafioso is there a bug?" as a reply to our answer (or to the code itself): the question about the
    code the answer was for. It was explained as code itself."""
    explainer = FakeExplainer()
    bot = make_bot(explainer, listen_to_messages=False)
    me = discord_client_user(BOT_ID)
    code = discord_message(f"see this\n```py\n{CODE}\n```")
    answer = discord_message("Listen up, pal.", author=me, reference=reply_reference(code))
    run(bot.on_message(discord_message(f"<@{BOT_ID}> is there a bug?", mentions=[me],
                                       reference=reply_reference(answer))))
    run(bot.on_message(discord_message(f"<@{BOT_ID}> explain", mentions=[me], reference=reply_reference(code))))
    channel = discord_channel()
    channel.fetch_message.return_value = code  # not in the gateway's cache: read from the channel
    run(bot.on_message(discord_message(f"<@{BOT_ID}> why?", mentions=[me], channel=channel,
                                       reference=reply_reference(code, resolved=False))))
    assert explainer.codes == [CODE] * 3 and explainer.requests == ["is there a bug?", "explain", "why?"]
    follow_up = discord_message(f"<@{BOT_ID}> and now?", mentions=[me], reference=reply_reference(answer))
    second = discord_message("It adds, pal.", author=me, reference=reply_reference(follow_up))
    run(bot.on_message(discord_message(f"<@{BOT_ID}> what else?", mentions=[me], reference=reply_reference(second))))
    assert explainer.codes[3] == CODE and explainer.requests[3] == "what else?"  # a follow-up to a follow-up
    prose = discord_message("just words here")
    run(bot.on_message(discord_message(f"<@{BOT_ID}> why?", mentions=[me], reference=reply_reference(prose))))
    run(bot.on_message(discord_message(f"<@{BOT_ID}> x = 1", mentions=[me], reference=reply_reference(code))))
    assert explainer.codes[4:] == ["why?", "x = 1"]  # no code there, or code here: as before


def test_messages_without_python_code_are_ignored():
    explainer = FakeExplainer()
    bot = make_bot(explainer)
    for text in ("good morning, family", "```js\nconsole.log(1)\n```"):
        message = discord_message(text)
        run(bot.on_message(message))
        message.reply.assert_not_awaited()
    assert explainer.codes == []


def test_a_py_attachment_is_code():
    explainer = FakeExplainer()
    bot = make_bot(explainer)
    message = discord_message("check my file", attachments=[discord_attachment("mob.py", b"x = 1\n")])
    run(bot.on_message(message))
    assert explainer.codes == ["x = 1"]


def test_an_oversized_attachment_is_refused_in_character():
    explainer = FakeExplainer()
    bot = make_bot(explainer)
    big = discord_attachment("big.py", b"x = 1\n", size=bot.max_code_chars + 1)
    message = discord_message("please", attachments=[big])
    run(bot.on_message(message))
    big.read.assert_not_awaited()
    assert explainer.codes == []
    assert "too heavy" in replies(message)[0]


def test_without_message_content_only_mentions_are_answered_and_the_mention_is_removed():
    explainer = FakeExplainer()
    bot = make_bot(explainer, listen_to_messages=False)
    assert bot.intents.message_content is False
    run(bot.on_message(discord_message(FENCED)))
    assert explainer.codes == []
    mention = discord_message(f"<@{BOT_ID}> print('hi')", mentions=[discord_client_user(BOT_ID)])
    run(bot.on_message(mention))
    assert explainer.codes == ["print('hi')"]
    assert len(replies(mention)) == 1
    assert make_bot(listen_to_messages=True).intents.message_content is True


def test_bots_and_itself_are_ignored():
    explainer = FakeExplainer()
    bot = make_bot(explainer)
    run(bot.on_message(discord_message(FENCED, author=discord_user(555, bot=True))))
    own = discord_message(FENCED, author=discord_user(BOT_ID))
    run(bot.on_message(own))
    assert explainer.codes == []
    own.reply.assert_not_awaited()


def test_long_answers_are_split_under_2000_without_breaking_backticks():
    answer = " ".join(f"Step {i}: `value_{i} = compute({i})` does the job, pal." for i in range(120))
    bot = make_bot(FakeExplainer(answer=answer))
    message = discord_message(FENCED)
    run(bot.on_message(message))
    sent = replies(message)
    assert len(sent) >= 3 and message.reply.await_count == 1  # one reply, the rest in the channel
    assert all(len(chunk) <= DISCORD_LIMIT for chunk in sent)
    assert all(chunk.count("`") % 2 == 0 for chunk in sent)
    assert " ".join(sent) == answer
    for call in message.channel.send.await_args_list:
        assert call.kwargs["allowed_mentions"].to_dict() == discord.AllowedMentions.none().to_dict()


@pytest.mark.parametrize("cfg, channel, author, answered", [
    ({"allowed_channels": [2]}, discord_channel(2), discord_user(), True),
    ({"allowed_channels": [2]}, discord_channel(3), discord_user(), False),
    ({"allowed_channels": [2]}, discord_channel(5, parent_id=2), discord_user(), True),  # thread of an allowed one
    ({"allowed_guilds": [1]}, discord_channel(2, discord_guild(1)), discord_user(), True),
    ({"allowed_guilds": [1]}, discord_channel(2, discord_guild(8)), discord_user(), False),
    ({"allowed_users": [1001]}, discord_channel(2), discord_user(1001), True),
    ({"allowed_users": [1001]}, discord_channel(2), discord_user(1002), False),
])
def test_allow_lists(cfg, channel, author, answered):
    explainer = FakeExplainer()
    bot = make_bot(explainer, **cfg)
    message = discord_message(FENCED, channel=channel, author=author)
    run(bot.on_message(message))
    assert bool(explainer.codes) is answered
    assert message.reply.await_count == int(answered)  # a stranger's channel gets silence


def test_a_strangers_paste_is_not_even_parsed(monkeypatch):
    def parse(text):
        raise AssertionError("parsed before the allow-list check")  # 4,000 backticks once cost 1.5 s here
    monkeypatch.setattr("mafioso.bot.discord_bot.python_blocks", parse)
    bot = make_bot(FakeExplainer(), allowed_channels=[2])
    run(bot.on_message(discord_message(FENCED, channel=discord_channel(3))))


def test_cooldown_answers_easy_pal_then_lets_the_user_back():
    explainer, clock = FakeExplainer(), Clock()
    bot = make_bot(explainer, clock=clock, cooldown=10)
    first, second, other = discord_message(FENCED), discord_message(FENCED), discord_message(
        FENCED, author=discord_user(2002))
    run(bot.on_message(first))
    clock.now += 3
    run(bot.on_message(second))
    run(bot.on_message(other))  # the cooldown is per user
    assert len(explainer.codes) == 2
    assert replies(second) == ["Easy, pal. One job at a time. Come back in 7 seconds."]
    clock.now += 8
    third = discord_message(FENCED)
    run(bot.on_message(third))
    assert len(explainer.codes) == 3 and replies(third)[0].startswith("Listen up")


@pytest.mark.parametrize("error, words", [
    (WorkerBusy("queue full: 256 waiting"), "seeing a lot of people"),
    (WorkerTimeout("timed out after 120.0 s"), "cannoli went stale"),
    (WorkerUnavailable("connection refused 10.0.0.7:8000"), "ain't takin' visitors"),
    (InputRejected("too_large", "7000 > 6000"), "6000 characters"),
])
def test_worker_failures_become_in_character_apologies(error, words):
    bot = make_bot(FakeExplainer(error=error))
    message = discord_message(FENCED)
    run(bot.on_message(message))
    (sent,) = replies(message)
    assert words in sent and str(error) not in sent


def test_unexpected_errors_are_logged_and_apologised_for(caplog):
    bot = make_bot(FakeExplainer(error=RuntimeError("secret internals")))
    message = discord_message(FENCED)
    with pytest.raises(RuntimeError):
        run(bot.on_message(message))  # discord.py hands this to on_error, the central handler:
    run(bot.on_error("on_message", message))
    assert replies(message) == [line("apology")]


# --------------------------------------------------------------------------------------- interactions


def test_slash_command_defers_before_explaining_then_follows_up():
    events = []
    explainer = FakeExplainer(events=events)
    bot = make_bot(explainer)
    interaction = discord_interaction(events=events)
    command = bot.tree.get_command("explain")
    run(command.callback(interaction, code="```py\nprint(1)\n```"))
    assert events == ["defer", "explain"]
    interaction.response.defer.assert_awaited_once_with(thinking=True)
    assert explainer.codes == ["print(1)"] and explainer.requests == [None]
    assert followups(interaction) == ["Listen up, pal: print(1). Capisce?"]
    assert interaction.followup.send.await_args.kwargs["allowed_mentions"].to_dict() == \
        discord.AllowedMentions.none().to_dict()


def test_slash_command_without_code_opens_the_form_and_the_form_explains():
    explainer = FakeExplainer()
    bot = make_bot(explainer)
    interaction = discord_interaction()
    run(bot.tree.get_command("explain").callback(interaction))
    (modal,) = interaction.response.send_modal.await_args.args
    assert isinstance(modal, CodeModal)
    assert modal.to_dict()["components"][0]["component"]["style"] == discord.TextStyle.paragraph.value
    modal.code.component._value = "for i in range(3):\n    print(i)"  # what Discord fills in on submit
    modal.question.component._value = "why  three?"
    submit = discord_interaction()
    run(modal.on_submit(submit))
    submit.response.defer.assert_awaited_once()
    assert explainer.codes == ["for i in range(3):\n    print(i)"] and explainer.requests == ["why three?"]
    assert followups(submit)[0].startswith("Listen up")


def test_the_slash_commands_question_is_asked_with_the_code():
    explainer = FakeExplainer()
    bot = make_bot(explainer)
    run(bot.tree.get_command("explain").callback(discord_interaction(), code="x = 1", question="is it  a bug?"))
    run(bot.tree.get_command("explain").callback(discord_interaction(), code="why?\n```\ny = 2\n```"))
    assert explainer.codes == ["x = 1", "y = 2"] and explainer.requests == ["is it a bug?", "why?"]
    form = discord_interaction()
    run(bot.tree.get_command("explain").callback(form, question="is there a bug?"))  # the form, question filled in
    (modal,) = form.response.send_modal.await_args.args
    assert modal.question.component.default == "is there a bug?"


def test_context_menu_explains_the_target_message_and_its_files():
    explainer = FakeExplainer()
    bot = make_bot(explainer, listen_to_messages=False)  # works without the privileged intent
    menu = bot.tree.get_command("Explain this code", type=discord.AppCommandType.message)
    target = discord_message("see ```\na = 1\n```", attachments=[discord_attachment("b.py", b"b = 2\n")])
    interaction = discord_interaction()
    run(menu.callback(interaction, target))
    interaction.response.defer.assert_awaited_once()
    assert explainer.codes == ["a = 1\n\nb = 2"]
    assert len(followups(interaction)) == 1


def test_context_menu_on_a_busy_worker_apologises():
    bot = make_bot(FakeExplainer(error=WorkerBusy("queue full")))
    menu = bot.tree.get_command("Explain this code", type=discord.AppCommandType.message)
    interaction = discord_interaction()
    run(menu.callback(interaction, discord_message("x = 1")))
    assert "seeing a lot of people" in followups(interaction)[0]


def test_interactions_outside_the_allow_list_are_refused_privately():
    explainer = FakeExplainer()
    bot = make_bot(explainer, allowed_channels=[42])
    interaction = discord_interaction(channel=discord_channel(2))
    run(bot.tree.get_command("explain").callback(interaction, code="x = 1"))
    interaction.response.send_message.assert_awaited_once()
    assert interaction.response.send_message.await_args.args == (line("not_here"),)
    assert interaction.response.send_message.await_args.kwargs["ephemeral"] is True
    interaction.response.defer.assert_not_awaited()
    assert explainer.codes == []


def test_interaction_cooldown_is_ephemeral():
    explainer = FakeExplainer()
    bot = make_bot(explainer, cooldown=30)
    command = bot.tree.get_command("explain")
    run(command.callback(discord_interaction(), code="x = 1"))
    again = discord_interaction()
    run(command.callback(again, code="x = 2"))
    assert explainer.codes == ["x = 1"]
    assert "Easy, pal" in again.response.send_message.await_args.args[0]
    assert again.response.send_message.await_args.kwargs["ephemeral"] is True


def test_central_interaction_error_handler_apologises_after_deferral(caplog):
    bot = make_bot()
    interaction = discord_interaction()
    run(interaction.response.defer())
    error = discord.app_commands.CommandInvokeError(bot.tree.get_command("explain"), RuntimeError("internals"))
    run(bot.on_app_command_error(interaction, error))
    assert followups(interaction) == [line("apology")]
    assert interaction.followup.send.await_args.kwargs["ephemeral"] is True
    fresh = discord_interaction()
    run(bot.on_app_command_error(fresh, error))
    assert fresh.response.send_message.await_args.args == (line("apology"),)
    assert "RuntimeError" in caplog.text


def test_commands_are_the_slash_command_and_the_message_menu():
    bot = make_bot()
    names = {(c.name, type(c).__name__) for c in bot.tree.get_commands()}
    assert names == {("explain", "Command"), ("Explain this code", "ContextMenu")}
    assert [p.name for p in bot.tree.get_command("explain").parameters] == ["code", "question", "persona"]
    assert re.fullmatch(r"[a-z_-]{1,32}", bot.tree.get_command("explain").name)


def test_a_token_discord_rejects_is_a_config_error_naming_the_variable(monkeypatch):
    """discord.py's real login against a loopback stand-in for the Discord API that answers 401."""
    from aiohttp import web

    from mafioso.core.errors import ConfigError

    async def unauthorized(request):
        return web.json_response({"message": "401: Unauthorized", "code": 0}, status=401)

    async def main():
        app = web.Application()
        app.router.add_get("/api/v10/users/@me", unauthorized)
        runner, base_url = await serve_loopback(app)
        monkeypatch.setattr(discord.http.Route, "BASE", base_url + "/api/v10")
        bot = MafiosoBot(FakeExplainer(), DiscordConfig(token="MTIz.revoked.token"))
        try:
            with pytest.raises(ConfigError, match="DISCORD_TOKEN") as error:
                await asyncio.wait_for(bot.run_until_cancelled(), 10)
            assert "revoked" not in str(error.value)
            assert bot.is_closed()
        finally:
            await runner.cleanup()

    run(main())


# -------------------------------------------------------------------------------------------- ratings


def test_a_thumbs_reaction_on_the_bots_answer_is_a_rating(tmp_path):
    from mafioso.core.feedback import FeedbackStore
    from mafioso.worker.service import Worker
    from tests.worker.helpers import FakeEngine, worker_config

    store = FeedbackStore.open(tmp_path / "f.db")
    asker, rater = discord_user(4242424242), discord_user(5151515151)

    def reaction(message_id: int, emoji: str, user_id: int) -> discord.RawReactionActionEvent:
        data = {"message_id": message_id, "channel_id": 2, "user_id": user_id, "guild_id": 1, "type": 0}
        return discord.RawReactionActionEvent(data, discord.PartialEmoji(name=emoji), "REACTION_ADD")

    async def main():
        worker = Worker(FakeEngine(), worker_config(), feedback=store)
        await worker.start()
        try:
            bot = make_bot(worker)
            bot.feedback = store
            message = discord_message(FENCED, author=asker)
            message.reply.return_value = discord_message("the answer", author=discord_client_user(BOT_ID))
            message.reply.return_value.id = 777
            await bot.on_message(message)
            await bot.on_raw_reaction_add(reaction(777, "👎", rater.id))
            await bot.on_raw_reaction_add(reaction(777, "👍", rater.id))  # the last one wins
            await bot.on_raw_reaction_add(reaction(777, "🍝", asker.id))  # not a rating
            await bot.on_raw_reaction_add(reaction(777, "👍", BOT_ID))  # the bot's own: ignored
            await bot.on_raw_reaction_add(reaction(888, "👍", rater.id))  # not an answer: ignored
        finally:
            await worker.stop()

    run(main())
    [row] = store.rated_answers()
    assert (row["ups"], row["downs"], row["platform"], row["code"]) == (1, 0, "discord", CODE)
    store.close()
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"4242424242" not in data and b"5151515151" not in data


# ------------------------------------------------------------------------------------------- streaming


def _bot_message():
    return discord_message("⏳", author=discord_client_user(BOT_ID))


def test_a_streamed_reply_appears_at_once_and_is_edited_at_most_once_a_second_per_channel():
    clock = Clock()
    deltas = ["Listen up.", " It adds.", " Two numbers.", " Like the books.", " Capisce?"]
    explainer = StreamingExplainer(deltas, tick=lambda: setattr(clock, "now", clock.now + 0.4))
    bot = make_bot(explainer, clock=clock)
    message = discord_message(FENCED)
    placeholder = message.reply.return_value = _bot_message()
    placeholder.edit.return_value = placeholder
    run(bot.on_message(message))
    assert message.reply.await_args.args == ("⏳",)  # the reply appears at once, as the in-progress marker
    edits = [c.kwargs["content"] for c in placeholder.edit.await_args_list]
    # deltas at t = 0.4, 0.8, 1.2, 1.6: edited at 0.4 and 1.6 (one second apart), then the final edit
    assert edits == ["Listen up." + IN_PROGRESS, "Listen up. It adds. Two numbers. Like the books." + IN_PROGRESS,
                     "".join(deltas)]
    assert all(c.kwargs["allowed_mentions"].to_dict() == discord.AllowedMentions.none().to_dict()
               for c in placeholder.edit.await_args_list)
    assert explainer.closed == 1 and message.channel.send.await_count == 0


def test_a_long_streamed_reply_keeps_its_fences_in_the_split_and_refusals_need_no_placeholder():
    answer = "Look at this.\n```\n" + "x = 1\n" * 500 + "```\nThat's all, pal."
    bot = make_bot(StreamingExplainer([answer[:1000], answer[1000:]]))
    message = discord_message(FENCED)
    placeholder = message.reply.return_value = _bot_message()
    placeholder.edit.return_value = placeholder
    run(bot.on_message(message))
    final = placeholder.edit.await_args.kwargs["content"]
    rest = [c.args[0] for c in message.channel.send.await_args_list]
    assert rest and all(len(chunk) <= 2000 and chunk.count("```") % 2 == 0 for chunk in [final, *rest])
    assert IN_PROGRESS not in final
    empty = discord_message("<@9000>  ", mentions=[discord_client_user(BOT_ID)])
    run(make_bot(StreamingExplainer(["x"]), listen_to_messages=False).on_message(empty))
    assert "⏳" not in replies(empty)[0]


def test_a_streamed_interaction_edits_its_deferred_response_and_a_failure_replaces_the_marker():
    from mafioso.core.errors import WorkerBusy

    bot = make_bot(StreamingExplainer(["It adds.", " Capisce?"]))
    interaction = discord_interaction()
    run(bot.answer_interaction(interaction, CODE))
    interaction.response.defer.assert_awaited_once()
    assert interaction.edit_original_response.await_args.kwargs["content"] == "It adds. Capisce?"
    failing = make_bot(StreamingExplainer(["x"], error=WorkerBusy("busy, pal", retry_after=3)))
    interaction = discord_interaction()
    run(failing.answer_interaction(interaction, CODE))
    assert "⏳" not in interaction.edit_original_response.await_args.kwargs["content"]
