"""Fixtures for every bot test: a Discord API emulator with discord.py pointed at it."""

from __future__ import annotations

import pytest

from bot.emulator import DiscordEmulator, point_discord_py_at


@pytest.fixture
async def emu():
    """A running emulator; discord.py talks to it for the test's duration and no request broke it."""
    async with DiscordEmulator() as emulator:
        restore = point_discord_py_at(emulator.api_base, emulator.gateway_url)
        try:
            yield emulator
        finally:
            restore()
        assert emulator.internal_errors == []
