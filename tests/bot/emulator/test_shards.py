"""The emulator's sharded gateway: the recommended count, shard pairs on IDENTIFY, guilds routed to their shard."""

from __future__ import annotations

import aiohttp
import discord
import pytest

from bot.emulator import DiscordEmulator
from bot.emulator.gateway import shard_for
from tests.bot.emulator.conftest import World
from tests.helpers import running


async def test_gateway_bot_recommends_the_shard_count_a_test_sets(emu: DiscordEmulator):
    """GET /gateway/bot answers with the emulator's URL and recommended_shards, as Discord does."""
    emu.gateway.recommended_shards = 3
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{emu.api_base}/gateway/bot", headers={"Authorization": f"Bot {emu.token}"}) as r:
            body = await r.json()
    assert body["shards"] == 3 and body["url"] == emu.gateway_url


async def test_identify_with_a_shard_outside_the_count_closes_4010(emu: DiscordEmulator, world: World):
    """A shard id not below the shard count is refused with 4010 (Invalid shard)."""
    client = discord.Client(intents=discord.Intents.default(), shard_id=2, shard_count=2)
    try:
        await client.login(emu.token)
        with pytest.raises(discord.ConnectionClosed) as caught:
            await client.connect(reconnect=False)
        assert caught.value.code == 4010
    finally:
        await client.close()


async def test_a_shard_gets_only_its_own_guilds(emu: DiscordEmulator, world: World):
    """A client on shard 1 of 2 sees the guilds whose (id >> 22) % 2 is 1, and not the others."""
    other = world.guild
    while shard_for(other.id, 2) == shard_for(world.guild.id, 2):  # ids carry their millisecond: wait one
        emu.clock.advance(0.001)
        other = emu.add_guild("second")
    on_shard = {shard: sorted(g.id for g in emu.state.guilds.values() if shard_for(g.id, 2) == shard)
                for shard in (0, 1)}
    client = discord.Client(intents=discord.Intents.default(), shard_id=1, shard_count=2)
    async with running(client, emu.token):
        assert sorted(g.id for g in client.guilds) == on_shard[1]
        assert on_shard[0] and not set(on_shard[0]) & {g.id for g in client.guilds}
