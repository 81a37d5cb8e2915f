"""Permission rules as small decorator factories over shared predicates (RoboDanny's is_mod()).

A refused check raises `Refused`, an app_commands.CheckFailure carrying the domain error whose
message the tree-level handler shows to the user.
"""

from __future__ import annotations

import discord
from discord import app_commands

from storage import guilds, lifecycle
from storage.errors import CooldownActive, DreambotError


class Refused(app_commands.CheckFailure):
    def __init__(self, error: DreambotError):
        super().__init__(str(error))
        self.error = error


async def ensure_not_banned(interaction: discord.Interaction) -> None:
    """Banned (a DreambotError) when a moderator of this guild barred the user; in a DM, of any guild."""
    await lifecycle.ensure_not_banned(interaction.client.db, user_id=interaction.user.id,
                                      guild_id=interaction.guild_id)


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

    This is the quick refusal, before slow work such as downloads; storage.lifecycle checks the cooldown
    again and records it in the transaction that accepts the request, so simultaneous requests can't
    all pass. Only an accepted request starts it: a refused one can be corrected and sent again at once.
    """
    async def predicate(interaction: discord.Interaction) -> bool:
        bot = interaction.client
        seconds = getattr(bot.settings, f"{command}_cooldown_seconds")
        left = await lifecycle.cooldown_left(bot.db, user_id=interaction.user.id, action=command, seconds=seconds)
        if left > 0:
            raise Refused(CooldownActive(command, left))
        return True
    return app_commands.check(predicate)


NOT_MODERATOR = ("Only this server's moderators can do that: it needs the Manage Server permission or the "
                 "moderator role set with /mod policy.")


def is_moderator(interaction: discord.Interaction, policy: guilds.Policy | None) -> bool:
    """Manage Server (as Discord computed it for this interaction) or the guild's moderator role.

    Checked by the bot itself: the /mod group's default permission is only what Discord shows,
    and a server's Integrations settings can open it to everyone.
    """
    member = interaction.user
    if interaction.guild_id is None or not isinstance(member, discord.Member):
        return False
    if interaction.permissions.manage_guild:
        return True
    role_id = policy.moderator_role_id if policy is not None else None
    return role_id is not None and member.get_role(role_id) is not None


async def ensure_moderator(interaction: discord.Interaction) -> None:
    """Refused unless the member moderates this guild (is_moderator under the guild's policy)."""
    policy = None
    if interaction.guild_id is not None:
        bot = interaction.client
        policy = await guilds.policy(bot.db, interaction.guild_id, default_review=bot.settings.review_required)
    if not is_moderator(interaction, policy):
        raise Refused(DreambotError(NOT_MODERATOR))


def moderator_only():
    """For a command outside /mod (whose cog checks every subcommand) that only moderators may run."""
    async def predicate(interaction: discord.Interaction) -> bool:
        await ensure_moderator(interaction)
        return True
    return app_commands.check(predicate)
