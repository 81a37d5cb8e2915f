"""Channels: age restriction (Discord's NSFW setting) reaches discord.py; spoiler files keep their mark."""

from __future__ import annotations

import io

import discord

from bot.emulator import DiscordEmulator
from tests.bot.emulator.conftest import World
from tests.bot.emulator.tiny_bot import TinyBot


async def test_an_age_restricted_channel_is_nsfw_to_the_client(emu: DiscordEmulator, world: World, bot: TinyBot):
    """A channel created age-restricted reads is_nsfw() in discord.py's cache; #general does not."""
    adult = emu.add_channel(world.guild, "after-dark", nsfw=True)
    found = await emu.wait_for(lambda: bot.get_channel(adult.id), what="the new channel in the cache")
    assert found.is_nsfw() and not bot.get_channel(world.channel.id).is_nsfw()


async def test_age_restriction_can_change_later(emu: DiscordEmulator, world: World, bot: TinyBot):
    """set_age_restricted sends CHANNEL_UPDATE; the client sees the change, and a fetch agrees."""
    emu.set_age_restricted(world.channel)
    await emu.wait_for(lambda: bot.get_channel(world.channel.id).is_nsfw(), what="the update")
    assert (await bot.fetch_channel(world.channel.id)).is_nsfw()


async def test_a_spoiler_file_keeps_its_mark(emu: DiscordEmulator, world: World, bot: TinyBot):
    """discord.File(spoiler=True) arrives named SPOILER_..., as Discord shows it blurred."""
    await bot.get_channel(world.channel.id).send(files=[discord.File(io.BytesIO(b"x"), "a.png", spoiler=True)])
    (msg,) = emu.channel_messages(world.channel)
    assert msg.files[0].filename == "SPOILER_a.png"
