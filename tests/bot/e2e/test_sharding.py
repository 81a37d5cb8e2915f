"""bot.shards: the real DreamBot as discord.py's AutoShardedBot against the emulator's sharded gateway."""

from __future__ import annotations

import dataclasses

import pytest

from bot.bot import ShardedDreamBot, bot_class, shard_options
from bot.emulator import DiscordEmulator, Guild
from bot.emulator.gateway import shard_for
from storage import db as database
from storage.config import Config
from tests.helpers import running


class QuickShardedBot(ShardedDreamBot):
    async def before_identify_hook(self, shard_id, *, initial: bool = False) -> None:
        """discord.py waits 5 s between two shards' IDENTIFYs (Discord's limit); the emulator needs no wait."""


def guilds_on_both_shards(emu: DiscordEmulator, world_guild: Guild) -> dict[int, Guild]:
    """One guild on each of 2 shards: ids carry the creation millisecond, so the next millisecond's guild
    lands on the other shard."""
    found = {shard_for(world_guild.id, 2): world_guild}
    while len(found) < 2:
        emu.clock.advance(0.001)
        guild = emu.add_guild(f"dreamers-{len(found)}", channels=("general",))
        found.setdefault(shard_for(guild.id, 2), guild)
    return found


def guilds_created(session) -> set[int]:
    return {int(payload["d"]["id"]) for _, payload in session.sent if payload["t"] == "GUILD_CREATE"}


def interaction_guilds(session) -> list[int]:
    return [int(payload["d"]["guild_id"]) for _, payload in session.sent if payload["t"] == "INTERACTION_CREATE"]


@pytest.mark.parametrize("shards", ["2", "auto"])
async def test_a_sharded_bot_answers_commands_in_guilds_on_both_shards(emu: DiscordEmulator, world, config: Config,
                                                                       shards: str):
    """With bot.shards = 2 (or "auto", Discord recommending 2) two shards connect, each gets only its guilds,
    and /subjects is answered in a guild on either shard."""
    emu.gateway.recommended_shards = 2
    guilds = guilds_on_both_shards(emu, world.guild)
    config = dataclasses.replace(config, bot=dataclasses.replace(config.bot, shards=shards))
    assert bot_class(shards) is ShardedDreamBot
    async with database.connect(config.storage.database) as db:
        client = QuickShardedBot(db=db, settings=config.bot, storage=config.storage, poll_seconds=0.05,
                                 guild_ready_timeout=0.05, **shard_options(shards))
        async with running(client, emu.token, timeout=15):
            assert client.shard_count == 2
            assert sorted(s.shard for s in emu.gateway.live_sessions) == [[0, 2], [1, 2]]
            for shard_id, guild in guilds.items():
                assert client.get_guild(guild.id).shard_id == shard_id
                session = next(s for s in emu.gateway.live_sessions if s.shard == [shard_id, 2])
                created = guilds_created(session)
                assert guild.id in created and guilds[1 - shard_id].id not in created  # each guild on its shard only
                user = world.alice if guild is world.guild else emu.add_member(guild, f"user-{shard_id}")
                record = await emu.invoke_slash(guild.id, emu.channel_named(guild, "general").id, user, "subjects")
                assert "You have no subjects here yet" in await record.wait_for_text("no subjects", timeout=10)
            for shard_id, guild in guilds.items():  # each command went to its guild's shard alone
                session = next(s for s in emu.gateway.live_sessions if s.shard == [shard_id, 2])
                assert interaction_guilds(session) == [guild.id]


@pytest.mark.parametrize(("shards", "options"), [("", {}), ("auto", {}), ("3", {"shard_count": 3})])
def test_bot_shards_setting_picks_the_client(shards, options):
    """Empty: one connection (DreamBot); "auto": AutoShardedBot asking Discord; a number: that many shards."""
    assert shard_options(shards) == options
    assert (bot_class(shards) is ShardedDreamBot) == bool(shards)
