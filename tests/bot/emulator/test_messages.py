"""Channel messages from the real client: nonces, edits, rate limits, errors and upload limits."""

from __future__ import annotations

import io

import discord
import pytest

from bot.emulator import DiscordEmulator
from tests.bot.emulator.conftest import World
from tests.bot.emulator.tiny_bot import TinyBot


def general(bot: TinyBot, world: World) -> discord.TextChannel:
    return bot.get_channel(world.channel.id)


async def test_same_nonce_twice_creates_one_message(emu: DiscordEmulator, world: World, bot: TinyBot):
    """With enforce_nonce, a repeated nonce returns the first message instead of a new one."""
    first = await general(bot, world).send("job 7 finished", nonce=7001)
    second = await general(bot, world).send("job 7 finished", nonce=7001)
    assert first.id == second.id
    assert len(emu.channel_messages(world.channel)) == 1


async def test_edits_keep_every_version(emu: DiscordEmulator, world: World, bot: TinyBot):
    """Editing a channel message appends to its history, oldest first."""
    msg = await general(bot, world).send("training 0%")
    await msg.edit(content="training 50%")
    await msg.edit(content="training 100%")
    stored = await emu.wait_for_message(world.channel, lambda m: m.content == "training 100%")
    assert [r.content for r in stored.history] == ["training 0%", "training 50%", "training 100%"]


async def test_files_are_recorded_with_their_bytes(emu: DiscordEmulator, world: World, bot: TinyBot):
    """Uploaded files keep name, size, bytes and a content type sniffed from the name."""
    await general(bot, world).send(files=[discord.File(io.BytesIO(b"abc"), "grid.png")])
    (stored,) = emu.channel_messages(world.channel)
    (file,) = stored.files
    assert (file.filename, file.size, file.data, file.content_type) == ("grid.png", 3, b"abc", "image/png")


@pytest.mark.parametrize("is_global", [False, True])
async def test_injected_429_is_retried(emu: DiscordEmulator, world: World, bot: TinyBot, is_global: bool):
    """discord.py waits out an injected 429 (route or global) and the send succeeds."""
    emu.faults.rate_limit("POST", "/channels/{channel_id}/messages", retry_after=0.05, is_global=is_global)
    await general(bot, world).send("after the limit")
    assert emu.faults.fired == [f"429 POST /channels/{world.channel.id}/messages"]
    assert [m.content for m in emu.channel_messages(world.channel)] == ["after the limit"]


async def test_bucket_headers_are_honoured_without_429(emu: DiscordEmulator, world: World, bot: TinyBot):
    """With a 2-per-0.2 s bucket, discord.py paces a third send itself instead of hitting 429."""
    emu.set_rate_limit(2, 0.2)
    for n in range(3):
        await general(bot, world).send(f"message {n}")
    assert len(emu.channel_messages(world.channel)) == 3
    assert not any("429" in line for line in emu.transcript.lines)


async def test_server_error_once_is_retried(emu: DiscordEmulator, world: World, bot: TinyBot):
    """A single 500 is retried by discord.py (after its one-second pause)."""
    emu.faults.server_error("POST", "/channels/*/messages")
    await general(bot, world).send("eventually")
    assert emu.faults.fired[0].startswith("500 POST")
    assert len(emu.channel_messages(world.channel)) == 1


async def test_oversized_upload_is_413(emu: DiscordEmulator, world: World, bot: TinyBot):
    """A file over the upload limit raises HTTPException 413 / 40005 and posts nothing."""
    emu.faults.upload_limit = 1024
    with pytest.raises(discord.HTTPException) as caught:
        await general(bot, world).send(file=discord.File(io.BytesIO(b"x" * 2048), "grid.png"))
    assert (caught.value.status, caught.value.code) == (413, 40005)
    assert emu.channel_messages(world.channel) == []


async def test_unknown_channel_is_404_10003(emu: DiscordEmulator, world: World, bot: TinyBot):
    """Sending to a channel that does not exist raises NotFound with code 10003."""
    with pytest.raises(discord.NotFound) as caught:
        await bot.get_partial_messageable(1234).send("anyone?")
    assert caught.value.code == 10003


async def test_deleted_message_is_404_10008(emu: DiscordEmulator, world: World, bot: TinyBot):
    """Fetching a deleted message raises NotFound with code 10008."""
    msg = await general(bot, world).send("soon gone")
    await msg.delete()
    with pytest.raises(discord.NotFound) as caught:
        await general(bot, world).fetch_message(msg.id)
    assert caught.value.code == 10008


async def test_bot_messages_arrive_over_the_gateway(emu: DiscordEmulator, world: World, bot: TinyBot):
    """MESSAGE_CREATE for the bot's own send reaches on_message."""
    channel = general(bot, world)
    waiter = bot.loop.create_task(bot.wait_for("message", check=lambda m: m.content == "echo", timeout=2))
    await channel.send("echo")
    assert (await waiter).channel.id == world.channel.id


async def test_direct_message_goes_to_a_dm_channel(emu: DiscordEmulator, world: World, bot: TinyBot):
    """user.send() opens a DM channel and the message is stored and logged there."""
    user = await bot.fetch_user(world.alice.id)
    await user.send("your model is ready")
    dm = emu.state.dm_channel(world.alice)
    assert [m.content for m in emu.channel_messages(dm)] == ["your model is ready"]
    assert "[DM alice] dreambot: your model is ready" in emu.transcript.lines
