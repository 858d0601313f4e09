"""Discord adapter (discord.py): explains Python code in character.

Three ways in, one way out (checks → explain → split under 2,000 characters → send, mentions disabled):

* a message with a fenced Python block or a ``.py`` file (``DISCORD_LISTEN_TO_MESSAGES=true``, which needs the
  privileged Message Content intent), or an @mention with code: answered as a reply, typing meanwhile;
* ``/explain code:…``, or ``/explain`` alone for a form that takes multi-line code: a deferred answer;
* the "Explain this code" message context menu (works without the privileged intent).

A 👍 or 👎 reaction on one of the bot's answers is a rating (``on_raw_reaction_add``): with a feedback store
(:mod:`mafioso.core.feedback`) each answer message is linked to its answer id, and the reacting user is stored hashed.

With an explainer that streams (the worker, the HTTP client: :mod:`mafioso.bot.streaming`) the reply appears at
once as an in-progress marker and is edited as the answer grows, at most once a second per channel
(:class:`mafioso.bot.streaming.Throttle`, under Discord's edit rate limit; discord.py waits out a 429); the final
edit drops the marker and any further chunks (split under 2,000 characters, fences kept) follow as messages.

The bot never touches the model: it awaits ``explainer.explain(code, request)`` (or its stream; the text
around a fenced block, or beside a file, is the request). Worker failures become in-character apologies in
:meth:`MafiosoBot.explain_chunks`; anything unexpected lands in the central handlers
:meth:`MafiosoBot.on_error` / :meth:`MafiosoBot.on_app_command_error`, which log and apologise.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Callable, Iterable, Sequence

import discord
from discord import app_commands

from mafioso.bot.personas import UnknownPersonaChoice, choose, parse_channel_personas, persona_of, say, use_persona
from mafioso.bot.streaming import IN_PROGRESS, Throttle, answer_texts
from mafioso.core.explanation import Explainer, Explanation
from mafioso.bot.extract import Paste, decode_code_file, error_line, is_code_file, python_blocks, split_text
from mafioso.core.config import DiscordConfig
from mafioso.core.errors import ConfigError, InputRejected, RequestError
from mafioso.prompts.followups import prose

log = logging.getLogger("mafioso.discord")

DISCORD_LIMIT = 2000
NO_MENTIONS = discord.AllowedMentions.none()
#: View Channels, Send Messages, Send Messages in Threads, Read Message History (a reply needs it).
PERMISSIONS = discord.Permissions(view_channel=True, send_messages=True, send_messages_in_threads=True,
                                  read_message_history=True)
RATINGS = {"👍": 1, "👎": -1}
#: How far back along a chain of replies a follow-up question looks for the code it asks about.
REPLY_HOPS = 6
#: A streamed reply is edited at most this often per channel.
EDIT_EVERY_S = 1.0


async def _edited(message: discord.Message, text: str) -> discord.Message:
    """``message`` after its text became ``text`` (its id stays: a reaction on it still rates the answer)."""
    await message.edit(content=text, allowed_mentions=NO_MENTIONS)
    return message


def _carries_code(text: str, attachments: Iterable[discord.Attachment], *, closed: bool = False) -> bool:
    """Whether a message has code to explain: a Python (or untagged) fenced block, only closed ones with
    ``closed``, or a ``.py`` file."""
    return bool(python_blocks(text, closed=closed)) or any(is_code_file(a.filename) for a in attachments)


class Cooldown:
    """Per-user cooldown: one request every ``seconds``."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.seconds, self.clock = seconds, clock
        self._last: dict[int, float] = {}

    def retry_after(self, user_id: int) -> float:
        """0 (and the clock restarts) when the user may go now; else the seconds left to wait."""
        now = self.clock()
        last = self._last.get(user_id)
        if last is not None and now - last < self.seconds:
            return self.seconds - (now - last)
        if len(self._last) > 10_000:  # forget users whose cooldown is long over
            self._last = {k: t for k, t in self._last.items() if now - t < self.seconds}
        self._last[user_id] = now
        return 0.0


class CodeModal(discord.ui.Modal):
    """The form behind ``/explain`` without code: a paragraph box for multi-line code, a line for the question."""

    code = discord.ui.Label(text="Your Python code", component=discord.ui.TextInput(
        style=discord.TextStyle.paragraph, placeholder="def shakedown(crew): ..."))
    question = discord.ui.Label(text="Your question (optional)", component=discord.ui.TextInput(
        style=discord.TextStyle.short, placeholder="is there a bug?", required=False, max_length=300))

    def __init__(self, bot: MafiosoBot, persona: str | None = None, question: str | None = None):
        super().__init__(title=bot.say("form_title"), timeout=900)
        self.bot, self.persona = bot, persona
        self.code.component.max_length = min(4000, bot.max_code_chars)
        self.question.component.default = question

    async def on_submit(self, interaction: discord.Interaction) -> None:
        """Explain what was pasted, with the question asked."""
        await self.bot.answer_interaction(interaction, self.code.component.value, persona=self.persona,
                                          question=self.question.component.value)

    async def on_error(self, interaction: discord.Interaction, error: Exception, /) -> None:
        """Route failures to the bot's central handler."""
        await self.bot.on_app_command_error(interaction, error)


class MafiosoBot(discord.Client):
    """The Discord bot: one client, one command tree, every trigger through the same checks."""

    def __init__(self, explainer: Explainer, cfg: DiscordConfig, *, max_code_chars: int = 6000,
                 clock: Callable[[], float] = time.monotonic, feedback=None):
        intents = discord.Intents.default()
        intents.message_content = cfg.listen_to_messages  # privileged: enable it in the Developer Portal too
        super().__init__(intents=intents, allowed_mentions=NO_MENTIONS)
        self.explainer, self.cfg, self.max_code_chars = explainer, cfg, max_code_chars
        self.feedback = feedback  # a mafioso.core.feedback.FeedbackStore, or None: no ratings
        self.cooldown = Cooldown(cfg.cooldown, clock)
        self.channel_personas = parse_channel_personas(cfg.channel_personas, "DISCORD_CHANNEL_PERSONAS")
        self.edits = Throttle(EDIT_EVERY_S, clock)  # streamed replies: edits per channel
        self.tree = app_commands.CommandTree(self)
        self.tree.error(self.on_app_command_error)
        self._add_commands()

    def _add_commands(self) -> None:
        bot = self

        @app_commands.command(name="explain", description="Explain some Python code, mafioso style")
        @app_commands.describe(code="the code; leave it out to paste several lines in a form",
                               question="what you want to know about it (default: explain it)",
                               persona="who explains it (default: this channel's)")
        async def explain(interaction: discord.Interaction, code: str | None = None, question: str | None = None,
                          persona: str | None = None) -> None:
            """/explain [code] [question] [persona]: explain the code, or open the form when there is none."""
            try:
                bot.use_channel_persona(interaction.channel, interaction.channel_id, persona)
            except UnknownPersonaChoice as exc:
                await interaction.response.send_message(bot.say("who_is_that", detail=exc), ephemeral=True,
                                                        allowed_mentions=NO_MENTIONS)
                return
            if code and code.strip():
                await bot.answer_interaction(interaction, code, persona=persona, question=question)
            elif await bot.admit(interaction, cooldown=False):  # the cooldown counts when the form comes back
                await interaction.response.send_modal(CodeModal(bot, persona, question))

        async def explain_message(interaction: discord.Interaction, message: discord.Message) -> None:
            """Message menu → Apps → Explain this code."""
            await bot.answer_interaction(interaction, message.content, message.attachments)

        self.tree.add_command(explain)
        self.tree.add_command(app_commands.ContextMenu(name="Explain this code", callback=explain_message))

    # ----------------------------------------------------------------------------------------- lifecycle

    async def setup_hook(self) -> None:
        """Publish the commands: to each allowed guild (instant), else globally (may take up to an hour)."""
        guilds = [discord.Object(id=g) for g in self.cfg.allowed_guilds]
        for guild in guilds:
            self.tree.copy_global_to(guild=guild)
        for guild in guilds or [None]:
            try:
                await self.tree.sync(guild=guild)
            except discord.Forbidden:
                log.warning("discord: cannot register commands in guild %s; invite the bot with the "
                            "applications.commands scope", guild.id if guild else "-")

    async def on_ready(self) -> None:
        """Log who we are and how to invite us."""
        log.info("discord: logged in as %s in %d server(s); invite: %s", self.user, len(self.guilds),
                 discord.utils.oauth_url(self.application_id or self.user.id, permissions=PERMISSIONS,
                                         scopes=("bot", "applications.commands")))

    async def run_until_cancelled(self) -> None:
        """Log in and serve until cancelled; a bad token or a missing intent becomes a ConfigError."""
        try:
            async with self:
                await self.start(self.cfg.token)
        except discord.LoginFailure:
            raise ConfigError("Discord rejected DISCORD_TOKEN; reset it in the Developer Portal (Bot → "
                              "Reset Token)") from None
        except discord.PrivilegedIntentsRequired:
            raise ConfigError("DISCORD_LISTEN_TO_MESSAGES needs the Message Content intent: Developer Portal → "
                              "Bot → Privileged Gateway Intents → Message Content") from None

    # ------------------------------------------------------------------------------------------ triggers

    async def on_message(self, message: discord.Message) -> None:
        """Reply to a message that carries Python code (a fenced block, a .py file) or mentions us with code."""
        if message.author.bot or self.user is None or message.author.id == self.user.id:
            return
        mentioned = any(user.id == self.user.id for user in message.mentions)
        if not (mentioned or self.cfg.listen_to_messages):
            return
        # the allow-list before any parsing: a stranger's paste costs us nothing (issue 19)
        if not self.allowed(message.guild.id if message.guild else None, message.channel, message.author.id):
            return  # strangers' channels get silence, not a lecture
        self.use_channel_persona(message.channel)
        text = re.sub(rf"<@!?{self.user.id}>", "", message.content) if mentioned else message.content
        attachments, question = message.attachments, None
        has_code = _carries_code(text, attachments, closed=True)
        if not (mentioned or has_code):
            return
        if mentioned and not has_code and prose(text) and (asked := await self.replied_code(message)):
            text, attachments, question = asked.content, asked.attachments, text  # a follow-up question
        wait = self.cooldown.retry_after(message.author.id)
        if wait:
            await message.reply(self.say("cooldown", seconds=wait), mention_author=False, allowed_mentions=NO_MENTIONS,
                                delete_after=15)
            return
        if self.streams:
            paste, refusal = await self.code_or_refusal(text, attachments, fence_required=not mentioned,
                                                        question=question)
            if refusal is None:
                placeholder = await message.reply(IN_PROGRESS.strip(), mention_author=False,
                                                  allowed_mentions=NO_MENTIONS)
                sent, explanation = await self.stream_answer(
                    paste, message.channel.id, lambda text: _edited(placeholder, text),
                    lambda chunk: message.channel.send(chunk, allowed_mentions=NO_MENTIONS))
                await self.remember(sent, explanation, message.author.id)
                return
        async with message.channel.typing():
            chunks, explanation = await self.answer(text, attachments, fence_required=not mentioned,
                                                    question=question)
        first, *rest = chunks
        sent = [await message.reply(first, mention_author=False, allowed_mentions=NO_MENTIONS)]
        for chunk in rest:
            sent.append(await message.channel.send(chunk, allowed_mentions=NO_MENTIONS))
        await self.remember(sent, explanation, message.author.id)

    async def replied_code(self, message: discord.Message) -> discord.Message | None:
        """The message with code that a reply asks about: back along the replies (through our answers and earlier
        follow-ups, at most ``REPLY_HOPS``) to the first one someone else sent with code; None when it is no
        reply, none has code or one cannot be read."""
        target = message
        for _ in range(REPLY_HOPS):
            reference = target.reference
            if reference is None or reference.message_id is None:
                return None
            target = reference.resolved if isinstance(reference.resolved, discord.Message) else None
            if target is None:
                try:
                    target = await message.channel.fetch_message(reference.message_id)
                except discord.HTTPException:  # deleted, or no Read Message History
                    return None
            if target.author.id != self.user.id and _carries_code(target.content, target.attachments):
                return target
        return None

    async def answer_interaction(self, interaction: discord.Interaction, text: str,
                                 attachments: Sequence[discord.Attachment] = (), persona: str | None = None,
                                 question: str | None = None) -> None:
        """Answer /explain, the form or the context menu: checks, defer (Discord wants it within 3 s), follow up;
        in ``persona``, else the channel's; ``question`` (the command's or the form's) is asked with the code."""
        self.use_channel_persona(interaction.channel, interaction.channel_id, persona)
        if not await self.admit(interaction):
            return
        await interaction.response.defer(thinking=True)
        if self.streams:
            paste, refusal = await self.code_or_refusal(text, attachments, fence_required=False, question=question)
            if refusal is None:
                sent, explanation = await self.stream_answer(
                    paste, interaction.channel_id,
                    lambda text: interaction.edit_original_response(content=text, allowed_mentions=NO_MENTIONS),
                    lambda chunk: interaction.followup.send(chunk, allowed_mentions=NO_MENTIONS, wait=True))
                await self.remember(sent, explanation, interaction.user.id)
                return
        chunks, explanation = await self.answer(text, attachments, fence_required=False, question=question)
        sent = [await interaction.followup.send(chunk, allowed_mentions=NO_MENTIONS) for chunk in chunks]
        await self.remember(sent, explanation, interaction.user.id)

    async def admit(self, interaction: discord.Interaction, *, cooldown: bool = True) -> bool:
        """Allow-lists (and the cooldown); a refusal is an in-character ephemeral reply."""
        refusal = None
        if not self.allowed(interaction.guild_id, interaction.channel, interaction.user.id,
                            channel_id=interaction.channel_id):
            refusal = self.say("not_here")
        elif cooldown and (wait := self.cooldown.retry_after(interaction.user.id)):
            refusal = self.say("cooldown", seconds=wait)
        if refusal:
            await interaction.response.send_message(refusal, ephemeral=True, allowed_mentions=NO_MENTIONS)
        return refusal is None

    def use_channel_persona(self, channel: object, channel_id: int | None = None, asked: str | None = None) -> None:
        """Answer this request in ``asked``, else the persona of the channel (or of a thread's parent)."""
        ids = [i for i in (channel_id, getattr(channel, "id", None), getattr(channel, "parent_id", None)) if i]
        mapped = next((str(i) for i in ids if str(i) in self.channel_personas), None)
        use_persona(choose(self.explainer, self.channel_personas, mapped, asked))

    def allowed(self, guild_id: int | None, channel: object, user_id: int, channel_id: int | None = None) -> bool:
        """True when every configured allow-list admits the guild, the channel (or a thread's parent), the user."""
        cfg = self.cfg
        channels = {channel_id, getattr(channel, "id", None), getattr(channel, "parent_id", None)} - {None}
        return ((not cfg.allowed_guilds or guild_id in cfg.allowed_guilds)
                and (not cfg.allowed_channels or bool(channels & set(cfg.allowed_channels)))
                and (not cfg.allowed_users or user_id in cfg.allowed_users))

    # ----------------------------------------------------------------------------------- the one way out

    async def answer(self, text: str, attachments: Iterable[discord.Attachment], *, fence_required: bool,
                     question: str | None = None) -> tuple[list[str], Explanation | None]:
        """The reply chunks for a message's text and files, and the answer they carry (None: a refusal)."""
        try:
            paste, too_big = await self.gather_code(text, attachments, fence_required=fence_required,
                                                    question=question)
        except InputRejected as exc:  # a .py file that is not text
            return [self.refusal(exc)], None
        if not paste.code and too_big:
            return [self.say("file_too_big", limit=self.max_code_chars)], None
        return await self.explain_chunks(paste)

    def say(self, situation: str, **values: object) -> str:
        """The line for ``situation`` in the voice of the persona answering this request."""
        return say(self.explainer, situation, **values)

    def refusal(self, exc: RequestError) -> str:
        """The line for a request that was not served, in the voice of the persona answering it."""
        return error_line(exc, self.max_code_chars, persona_of(self.explainer))

    @property
    def streams(self) -> bool:
        """Whether the explainer can stream an answer (then replies grow by edits)."""
        return callable(getattr(self.explainer, "stream", None))

    async def code_or_refusal(self, text: str, attachments: Iterable[discord.Attachment], *, fence_required: bool,
                              question: str | None = None) -> tuple[Paste, str | None]:
        """The code to explain and its question, or the in-character line that refuses it (no code, a file too
        big or binary)."""
        try:
            paste, too_big = await self.gather_code(text, attachments, fence_required=fence_required,
                                                    question=question)
        except InputRejected as exc:
            return Paste(""), self.refusal(exc)
        if not paste.code and too_big:
            return paste, self.say("file_too_big", limit=self.max_code_chars)
        return paste, None if paste.code.strip() else self.say("no_code")

    async def stream_answer(self, paste: Paste, channel_id: int, show, more) -> tuple[list, Explanation | None]:
        """Show the answer as it grows with ``show(text)`` (editing the one message that holds the in-progress
        marker, at most once a second per channel), then the final first chunk without it and the other chunks
        with ``more(chunk)``; the messages sent and the answer (None on a refusal)."""
        try:
            async for text, answer in answer_texts(self.explainer, paste.code, paste.request):
                if answer is None and self.edits.ready(channel_id):
                    await show(split_text(text, DISCORD_LIMIT - len(IN_PROGRESS))[0] + IN_PROGRESS)
        except RequestError as exc:
            log.warning("discord: request not served: %s", type(exc).__name__)
            return [await show(self.refusal(exc))], None
        first, *rest = split_text(answer.text, DISCORD_LIMIT) or [self.say("empty_answer")]
        return [await show(first)] + [await more(chunk) for chunk in rest], answer

    async def gather_code(self, text: str, attachments: Iterable[discord.Attachment], *, fence_required: bool,
                          question: str | None = None) -> tuple[Paste, bool]:
        """The code of the text and the ``.py`` attachments with the message's question (:class:`Paste`; a
        ``question`` given apart replaces it), and whether a file was too big to take."""
        files = [a for a in attachments if is_code_file(a.filename)]
        parts = []
        for attachment in files:
            if attachment.size <= self.max_code_chars:
                parts.append(decode_code_file(await attachment.read()))
        paste = Paste.of(text, parts, fence_required=fence_required)
        if question and question.strip():
            paste = Paste(paste.code, " ".join(question.split()))
        return paste, len(parts) < len(files)

    async def explain_chunks(self, paste: Paste) -> tuple[list[str], Explanation | None]:
        """The explanation in chunks under 2,000 characters, or an in-character line when there is none; and
        the answer (None when there is none)."""
        if not paste.code.strip():
            return [self.say("no_code")], None
        try:
            explanation = await self.explainer.explain(paste.code, paste.request)
        except RequestError as exc:
            log.warning("discord: request not served: %s", type(exc).__name__)
            return [self.refusal(exc)], None
        return split_text(explanation.text, DISCORD_LIMIT) or [self.say("empty_answer")], explanation

    # ------------------------------------------------------------------------------------------- ratings

    async def remember(self, sent: list, explanation: Explanation | None, user_id: int) -> None:
        """Link the messages that carry an answer to its id, so a reaction on any of them rates it."""
        if self.feedback is None or explanation is None or not explanation.answer_id:
            return
        for message in sent:
            if isinstance(getattr(message, "id", None), int):
                await self.feedback.call("link_message", "discord", message.id, explanation.answer_id, user_id,
                                         explanation.text)

    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        """👍 / 👎 on one of our answers: the reacting user's rating (stored hashed; their last one counts)."""
        rating = RATINGS.get(str(payload.emoji))
        if rating is None or self.feedback is None or (self.user and payload.user_id == self.user.id):
            return
        answer_id = await self.feedback.call("answer_for_message", "discord", payload.message_id)
        if answer_id:
            await self.feedback.call("rate", answer_id, rating, payload.user_id, "discord")

    # ------------------------------------------------------------------------------ central error handlers

    async def on_error(self, event_method: str, /, *args, **kwargs) -> None:
        """Anything an event handler did not expect: log it, apologise to the message's author, keep running."""
        log.exception("discord: unexpected error in %s", event_method)
        message = args[0] if args and isinstance(args[0], discord.Message) else None
        if message is not None:
            try:
                await message.reply(self.say("apology"), mention_author=False, allowed_mentions=NO_MENTIONS)
            except discord.HTTPException:
                log.warning("discord: could not send the apology either")

    async def on_app_command_error(self, interaction: discord.Interaction, error: Exception) -> None:
        """Anything a command, the context menu or the form did not expect: log it, apologise, keep running."""
        original = getattr(error, "original", error)
        log.error("discord: unexpected error in an interaction: %s", type(original).__name__, exc_info=original)
        try:
            if interaction.response.is_done():
                await interaction.followup.send(self.say("apology"), ephemeral=True, allowed_mentions=NO_MENTIONS)
            else:
                await interaction.response.send_message(self.say("apology"), ephemeral=True,
                                                        allowed_mentions=NO_MENTIONS)
        except discord.HTTPException:
            log.warning("discord: could not send the apology either")
