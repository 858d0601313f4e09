"""discord.py objects built from gateway payloads, with ``spec_set`` mocks for everything that would talk to
Discord (a wrong attribute fails the test)."""

from __future__ import annotations

import unittest.mock
import warnings


def spec_mock(instance, **attributes):
    """A MagicMock with ``spec_set`` = a real discord.py object (a wrong attribute fails); async methods are
    AsyncMocks. ``attributes`` are set on it."""
    with warnings.catch_warnings(record=True):  # reading every property trips discord.py's deprecation notes
        mock = unittest.mock.MagicMock(spec_set=instance)
    for name, value in attributes.items():
        setattr(mock, name, value)
    return mock


def _discord_state():
    return unittest.mock.MagicMock(name="ConnectionState")


def discord_user(user_id: int = 1001, *, bot: bool = False, name: str = "vito"):
    """A real ``discord.User`` built from a gateway payload."""
    import discord

    return discord.User(state=_discord_state(), data={"id": user_id, "username": name, "discriminator": "0",
                                                     "avatar": None, "global_name": name, "bot": bot})


def discord_client_user(user_id: int = 9000):
    """A real ``discord.ClientUser`` (the bot itself) built from a payload."""
    import discord

    return discord.ClientUser(state=_discord_state(), data={"id": user_id, "username": "mafioso",
                                                           "discriminator": "0", "avatar": None, "bot": True})


def discord_guild(guild_id: int = 1):
    """A real ``discord.Guild`` built from a payload."""
    import discord

    return discord.Guild(state=_discord_state(), data={"id": guild_id, "name": "The Family", "roles": [],
                                                      "emojis": [], "stickers": [], "features": []})


def discord_channel(channel_id: int = 2, guild=None, *, parent_id: int | None = None):
    """A spec_set mock of a real TextChannel (or a Thread when ``parent_id`` is given): send, typing …"""
    import discord

    guild = guild or discord_guild()
    if parent_id is None:
        real = discord.TextChannel(state=_discord_state(), guild=guild,
                                   data={"id": channel_id, "name": "code-review", "type": 0, "position": 0})
        return spec_mock(real, id=channel_id, guild=guild)
    # A real Thread looks its parent up in the cache on introspection, so this one is specced from the class.
    return spec_mock(discord.Thread, id=channel_id, guild=guild, parent_id=parent_id)


def discord_attachment(filename: str = "mob.py", content: bytes = b"x = 1\n", size: int | None = None):
    """A spec_set mock of a real Attachment whose ``read()`` returns ``content``."""
    import discord

    real = discord.Attachment(state=_discord_state(), data={
        "id": 77, "filename": filename, "size": len(content), "url": f"https://cdn.example/{filename}",
        "proxy_url": f"https://cdn.example/{filename}"})
    attachment = spec_mock(real, filename=filename, size=len(content) if size is None else size)
    attachment.read.return_value = content
    return attachment


def discord_message(content: str, *, author=None, channel=None, mentions=(), attachments=(), reference=None):
    """A spec_set mock of a real Message built from a payload: ``reply`` is an AsyncMock; ``reference``: the
    message it replies to (:func:`reply_reference`)."""
    import discord

    channel = channel or discord_channel()
    author = author or discord_user()
    real = discord.Message(state=_discord_state(), channel=channel, data={
        "id": 3, "channel_id": channel.id, "author": {"id": author.id, "username": author.name,
                                                      "discriminator": "0", "avatar": None},
        "content": content, "timestamp": "2024-01-01T00:00:00+00:00", "edited_timestamp": None, "tts": False,
        "mention_everyone": False, "mentions": [], "mention_roles": [], "attachments": [], "embeds": [],
        "pinned": False, "type": 0})
    return spec_mock(real, content=content, author=author, channel=channel, guild=channel.guild,
                     mentions=list(mentions), attachments=list(attachments), mention_everyone=False,
                     reference=reference)


def reply_reference(message, *, resolved: bool = True):
    """A real ``discord.MessageReference`` to ``message``, resolved (as the gateway sends a reply) or not."""
    import discord

    reference = discord.MessageReference(message_id=message.id, channel_id=message.channel.id)
    reference.resolved = message if resolved else None
    return reference


def discord_interaction(*, user=None, channel=None, events: list | None = None):
    """A spec_set mock of ``discord.Interaction`` with spec_set mocks of its response and followup webhook.

    ``response.is_done()`` turns true once the interaction was answered; ``events`` records "defer".
    """
    import discord

    channel = channel or discord_channel()
    interaction = unittest.mock.MagicMock(spec_set=discord.Interaction)
    response = unittest.mock.MagicMock(spec_set=discord.InteractionResponse)
    response.is_done.side_effect = lambda: bool(response.defer.await_count or response.send_message.await_count
                                                or response.send_modal.await_count)
    if events is not None:
        response.defer.side_effect = lambda *a, **k: events.append("defer")
    interaction.response = response
    interaction.followup = unittest.mock.MagicMock(spec_set=discord.Webhook)
    interaction.user = user or discord_user()
    interaction.channel = channel
    interaction.channel_id = channel.id
    interaction.guild_id = channel.guild.id
    return interaction
