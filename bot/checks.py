"""Permission rules as small decorator factories over shared predicates (RoboDanny's is_mod()).

A refused check raises `Refused`, an app_commands.CheckFailure carrying the domain error whose
message the tree-level handler shows to the user.
"""

from __future__ import annotations

import discord
from discord import app_commands

from storage import guilds
from storage.errors import Banned, CooldownActive, DreambotError


class Refused(app_commands.CheckFailure):
    def __init__(self, error: DreambotError):
        super().__init__(str(error))
        self.error = error


async def ensure_not_banned(interaction: discord.Interaction) -> None:
    """Banned (a DreambotError) when a moderator of this guild barred the user."""
    if interaction.guild_id is None:
        return
    ban = await guilds.get_ban(interaction.client.db, guild_id=interaction.guild_id, user_id=interaction.user.id)
    if ban is not None:
        raise Banned(ban.reason)


def not_banned():
    async def predicate(interaction: discord.Interaction) -> bool:
        try:
            await ensure_not_banned(interaction)
        except DreambotError as exc:
            raise Refused(exc) from None
        return True
    return app_commands.check(predicate)


def cooldown(command: str):
    """Refuse while the user's cooldown for `command` runs; its length is `[bot] <command>_cooldown_seconds`.

    The cooldown starts only when a request is accepted (the cog calls bot.cooldowns.start), so a
    refused request can be corrected and sent again at once.
    """
    async def predicate(interaction: discord.Interaction) -> bool:
        bot = interaction.client
        seconds = getattr(bot.settings, f"{command}_cooldown_seconds")
        left = bot.cooldowns.remaining(command, interaction.user.id, seconds)
        if left > 0:
            raise Refused(CooldownActive(command, left))
        return True
    return app_commands.check(predicate)


def is_moderator(interaction: discord.Interaction) -> bool:
    """Manage Server in this guild (the /mod group's default permission, re-checked for buttons)."""
    perms = getattr(interaction.user, "guild_permissions", None)
    return interaction.guild_id is not None and perms is not None and perms.manage_guild
