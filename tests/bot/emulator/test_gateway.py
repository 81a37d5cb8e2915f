"""Gateway sessions: READY and GUILD_CREATE, compression, bad tokens, intents, restarts and resumes."""

from __future__ import annotations

import discord
import pytest

from bot.emulator import DiscordEmulator
from tests.bot.emulator.conftest import World
from tests.bot.emulator.tiny_bot import TinyBot
from tests.helpers import running


async def test_ready_brings_the_guild_with_channels_and_members(
    emu: DiscordEmulator, world: World, bot: TinyBot
):
    """After on_ready the client caches the guild, its channels, roles and the bot member."""
    guild = bot.get_guild(world.guild.id)
    assert guild.get_channel(world.channel.id).name == "general"
    assert guild.me is not None and guild.me.id == emu.bot_user.id
    assert {r.name for r in guild.roles} >= {"@everyone", "moderators"}


async def test_gateway_frames_use_zlib_stream(emu: DiscordEmulator, world: World, bot: TinyBot):
    """discord.py asks for zlib-stream and the session is served compressed."""
    assert [s.compress for s in emu.gateway.live_sessions] == ["zlib-stream"]


async def test_wrong_token_on_identify_closes_4004(emu: DiscordEmulator, world: World):
    """IDENTIFY with a token other than the emulator's is closed with 4004."""
    client = discord.Client(intents=discord.Intents.default())
    try:
        await client.login(emu.token)
        client.http.token = "not-the-token"
        with pytest.raises(discord.ConnectionClosed) as caught:
            await client.connect(reconnect=False)
        assert caught.value.code == 4004
    finally:
        await client.close()


async def test_wrong_token_on_login_is_refused(emu: DiscordEmulator):
    """GET /users/@me with a wrong token is 401, which discord.py reports as LoginFailure."""
    client = discord.Client(intents=discord.Intents.default())
    try:
        with pytest.raises(discord.LoginFailure):
            await client.login("not-the-token")
    finally:
        await client.close()


async def test_privileged_intents_not_enabled_close_4014(emu: DiscordEmulator, world: World):
    """Asking for the message-content intent the application lacks fails like Discord does."""
    client = discord.Client(intents=discord.Intents.all())
    try:
        await client.login(emu.token)
        with pytest.raises(discord.PrivilegedIntentsRequired):
            await client.connect(reconnect=True)
    finally:
        await client.close()


async def test_restart_makes_the_client_identify_again(emu: DiscordEmulator, world: World, bot: TinyBot):
    """restart_gateway() invalidates the session; the client re-IDENTIFYs and gets READY."""
    await emu.restart_gateway()
    await emu.wait_for_identify(2)
    await emu.wait_until_connected()
    record = await emu.invoke_slash(world.guild.id, world.channel.id, world.alice, "ping")
    await record.wait_for_text("pong")


async def test_new_client_after_restart_sees_persisted_state(
    emu: DiscordEmulator, world: World, bot: TinyBot
):
    """A second client (a bot restart) gets READY, and commands and messages outlived the first."""
    await bot.get_channel(world.channel.id).send("before restart")
    await bot.close()
    await emu.restart_gateway()
    second = TinyBot()
    async with running(second, emu.token):
        assert emu.gateway.identify_count == 2
        assert {c.name for c in await second.tree.fetch_commands()} >= {"ping", "mod"}
        history = [m.content async for m in second.get_channel(world.channel.id).history()]
        assert history == ["before restart"]


async def test_dropped_socket_is_resumed(emu: DiscordEmulator, world: World, bot: TinyBot):
    """disconnect_clients() keeps the session, so the client RESUMEs instead of identifying."""
    await emu.disconnect_clients()
    await emu.wait_for(lambda: emu.gateway.resume_count == 1, what="a RESUME")
    record = await emu.invoke_slash(world.guild.id, world.channel.id, world.alice, "ping")
    await record.wait_for_text("pong")
    assert emu.gateway.identify_count == 1
