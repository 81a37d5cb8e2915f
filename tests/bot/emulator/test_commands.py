"""The synced command tree as the emulator stores it, and how invocations find commands."""

from __future__ import annotations

import discord
import pytest

from bot.emulator import DiscordEmulator
from tests.bot.emulator.conftest import World
from tests.bot.emulator.tiny_bot import TinyBot


def option(command: dict, name: str) -> dict:
    return next(o for o in command["options"] if o["name"] == name)


async def test_sync_stores_option_types_and_autocomplete(emu: DiscordEmulator, world: World, bot: TinyBot):
    """/imagine is stored with a string autocomplete option and a ranged integer."""
    imagine = emu.command("imagine")
    assert {k: option(imagine, "subject")[k] for k in ("type", "required", "autocomplete")} == {
        "type": 3,
        "required": True,
        "autocomplete": True,
    }
    steps = option(imagine, "steps")
    assert (steps["type"], steps["min_value"], steps["max_value"], steps.get("required", False)) == (
        4,
        1,
        50,
        False,
    )
    assert option(emu.command("upload"), "photo")["type"] == 11


async def test_sync_stores_permissions_and_contexts(emu: DiscordEmulator, world: World, bot: TinyBot):
    """Group permissions and contexts are kept as discord.py sent them."""
    mod = emu.command("mod")
    assert mod["default_member_permissions"] == str(discord.Permissions(manage_messages=True).value)
    assert option(mod, "review")["type"] == 1
    assert "contexts" in mod


async def test_resync_keeps_command_ids(emu: DiscordEmulator, world: World, bot: TinyBot):
    """Syncing the same tree again keeps each command's id, as Discord does."""
    before = {c["name"]: c["id"] for c in emu.synced_commands()}
    await bot.tree.sync()
    assert {c["name"]: c["id"] for c in emu.synced_commands()} == before
    assert emu.state.commands.sync_count == 2


async def test_guild_commands_are_found_in_their_guild(emu: DiscordEmulator, world: World, bot: TinyBot):
    """A guild-synced command is stored per guild and dispatched with data.guild_id."""
    guild = discord.Object(world.guild.id)
    bot.tree.copy_global_to(guild=guild)
    await bot.tree.sync(guild=guild)
    assert "ping" in {c["name"] for c in emu.synced_commands(world.guild)}
    record = await emu.invoke_slash(world.guild.id, world.channel.id, world.alice, "ping")
    assert record.payload["data"]["guild_id"] == str(world.guild.id)
    await record.wait_for_text("pong")


async def test_unsynced_command_cannot_be_invoked(emu: DiscordEmulator, world: World, bot: TinyBot):
    """Invoking a name the bot never synced raises LookupError."""
    with pytest.raises(LookupError, match="tree.sync"):
        await emu.invoke_slash(world.guild.id, world.channel.id, world.alice, "train")
