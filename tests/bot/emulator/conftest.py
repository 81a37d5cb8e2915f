"""Fixtures for the emulator tests: a started emulator with discord.py pointed at it, a
guild with #general, a member and a moderator, and a running TinyBot with synced commands."""

from __future__ import annotations

from dataclasses import dataclass

import discord
import pytest

from bot.emulator import Channel, DiscordEmulator, Guild, User
from tests.bot.emulator.tiny_bot import TinyBot
from tests.helpers import running


@dataclass(frozen=True)
class World:
    guild: Guild
    channel: Channel
    alice: User
    mod: User


@pytest.fixture
def world(emu: DiscordEmulator) -> World:
    guild = emu.add_guild("dreamers")
    moderators = emu.add_role(
        guild, "moderators", permissions=discord.Permissions(manage_messages=True).value
    )
    return World(
        guild=guild,
        channel=emu.channel_named(guild, "general"),
        alice=emu.add_member(guild, "alice"),
        mod=emu.add_member(guild, "morgan", roles=[moderators]),
    )


@pytest.fixture
async def bot(emu: DiscordEmulator, world: World):
    client = TinyBot()
    async with running(client, emu.token):
        await client.tree.sync()
        yield client
