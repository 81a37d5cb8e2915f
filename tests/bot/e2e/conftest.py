"""The real dreambot (discord.py client) against the Discord emulator, with a fresh database per test.

The worker is simulated through storage (`tests.bot.e2e.worker_sim`), except in the one slow test.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import discord
import pytest

from bot.bot import DreamBot
from bot.emulator import Channel, DiscordEmulator, Guild, User
from storage import db as database
from storage.config import BotSettings, Config
from tests.helpers import running


@dataclass(frozen=True)
class World:
    guild: Guild
    channel: Channel
    audit: Channel
    alice: User
    bob: User
    mod: User


@pytest.fixture
def world(emu: DiscordEmulator) -> World:
    guild = emu.add_guild("dreamers", channels=("general", "audit"))
    mods = emu.add_role(guild, "moderators", permissions=discord.Permissions(manage_guild=True).value)
    return World(guild=guild, channel=emu.channel_named(guild, "general"), audit=emu.channel_named(guild, "audit"),
                 alice=emu.add_member(guild, "alice"), bob=emu.add_member(guild, "bob"),
                 mod=emu.add_member(guild, "morgan", roles=[mods]))


@pytest.fixture
def config(tmp_path, emu: DiscordEmulator, world: World) -> Config:
    base = Config()
    settings = BotSettings(api_base=emu.api_base, gateway_url=emu.gateway_url, audit_channel_id=world.audit.id,
                           train_cooldown_seconds=0, imagine_cooldown_seconds=0)
    return dataclasses.replace(base, bot=settings,
                               storage=dataclasses.replace(base.storage, data_dir=tmp_path / "data"))


class QuickBot(DreamBot):
    async def before_identify_hook(self, shard_id, *, initial: bool = False) -> None:
        """discord.py waits 5 s before a re-IDENTIFY (Discord's limit); the emulator needs no wait."""


@asynccontextmanager
async def running_bot(config: Config, token: str, *, timeout: float = 10.0,
                      **bot_options) -> AsyncIterator[DreamBot]:
    """Open the database, log in, connect, wait for ready; close everything afterwards."""
    async with database.connect(config.storage.database) as db:
        client = QuickBot(db=db, settings=config.bot, storage=config.storage, poll_seconds=0.05,
                          guild_ready_timeout=0.05, **bot_options)
        async with running(client, token, timeout=timeout):
            yield client


@pytest.fixture
async def dreambot(config: Config, emu: DiscordEmulator):
    async with running_bot(config, emu.token) as client:
        yield client


_PHOTOS: dict[str, bytes] = {}


def photo(name: str) -> bytes:
    """A real photograph (scikit-image's), JPEG-encoded once per test session."""
    if name not in _PHOTOS:
        from storage.sample_photos import sample_image

        buf = io.BytesIO()
        sample_image(name).convert("RGB").save(buf, format="JPEG", quality=90)
        _PHOTOS[name] = buf.getvalue()
    return _PHOTOS[name]


@pytest.fixture
def three_photos() -> list[tuple[str, bytes, str]]:
    return [(f"{n}.jpg", photo(n), "image/jpeg") for n in ("chelsea", "astronaut", "rocket")]
