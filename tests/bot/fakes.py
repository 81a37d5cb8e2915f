"""Discord fakes with `spec_set` taken from real discord.py instances, so a misspelt attribute raises."""

from __future__ import annotations

from unittest.mock import AsyncMock, MagicMock

import discord

_STATE = MagicMock()
_STATE._command_tree = None  # no tree: Interaction.command is None instead of a lookup
_USER_DATA = {"id": "1", "username": "alice", "discriminator": "0", "avatar": None, "global_name": None}
_INTERACTION_DATA = {"id": "10", "application_id": "20", "type": 2, "token": "t", "version": 1,
                     "channel_id": "30", "guild_id": "40", "user": _USER_DATA, "data": {"id": "50", "name": "x"},
                     "attachment_size_limit": 10 << 20, "entitlements": [], "authorizing_integration_owners": {}}
INTERACTION = discord.Interaction(data=_INTERACTION_DATA, state=_STATE)
USER = discord.User(state=_STATE, data=_USER_DATA)
RESPONSE = discord.InteractionResponse(INTERACTION)


def user(user_id: int = 1) -> MagicMock:
    fake = MagicMock(spec_set=USER)
    fake.id = user_id
    return fake


def interaction(*, user_id: int = 1, guild_id: int | None = 40, client=None) -> MagicMock:
    """An Interaction whose response methods are AsyncMocks; `client` is the bot (with .db etc.)."""
    fake = MagicMock(spec_set=INTERACTION)
    fake.user = user(user_id)
    fake.guild_id = guild_id
    fake.client = client
    response = MagicMock(spec_set=RESPONSE)
    for name in ("send_message", "defer", "edit_message"):
        setattr(response, name, AsyncMock())
    response.is_done.return_value = False
    fake.response = response
    fake.followup = MagicMock()
    fake.followup.send = AsyncMock()
    return fake
