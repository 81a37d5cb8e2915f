"""The one place errors become replies: domain errors say what to do; anything else is logged.

No traceback ever reaches a user: unexpected errors get `log.exception` and a generic reply.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable

import discord
from discord import app_commands

from bot.checks import Refused
from storage.errors import DreambotError

log = logging.getLogger(__name__)

GENERIC = ("Something went wrong on our side and nothing was changed. Please try again in a minute; "
           "if it keeps happening, tell a moderator.")


def user_message(error: BaseException) -> str | None:
    """The text to show for an error, or None when it is unexpected (and must be logged)."""
    if isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    if isinstance(error, Refused):
        return str(error.error)
    if isinstance(error, DreambotError):
        return str(error)
    if isinstance(error, app_commands.NoPrivateMessage):
        return "This command works only in a server, not in direct messages."
    if isinstance(error, app_commands.MissingPermissions):
        return "You need the Manage Server permission for this."
    if isinstance(error, app_commands.CheckFailure):
        return "You can't use this command here."
    return None


async def send_ephemeral(interaction: discord.Interaction, text: str, **kwargs) -> None:
    """Reply privately, whether or not the interaction was already answered or deferred."""
    if interaction.response.is_done():
        await interaction.followup.send(text, ephemeral=True, **kwargs)
    else:
        await interaction.response.send_message(text, ephemeral=True, **kwargs)


async def reply_error(interaction: discord.Interaction, error: BaseException) -> None:
    text = user_message(error)
    if text is None:
        original = getattr(error, "original", error)
        log.error("unexpected error in %s", _where(interaction), exc_info=original)
        text = GENERIC
    try:
        await send_ephemeral(interaction, text)
    except discord.HTTPException:
        log.exception("could not tell the user about an error in %s", _where(interaction))


async def on_tree_error(interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
    """CommandTree.on_error: every slash command's failures end here."""
    await reply_error(interaction, error)


def guarded(callback: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[None]]:
    """For button callbacks (discord.py only logs their errors): reply like the tree handler does."""
    @functools.wraps(callback)
    async def wrapper(self, interaction: discord.Interaction, *args) -> None:
        try:
            await callback(self, interaction, *args)
        except Exception as exc:  # noqa: BLE001 - every error is answered, unexpected ones logged
            await reply_error(interaction, exc)
    return wrapper


def _where(interaction: discord.Interaction) -> str:
    command = interaction.command.qualified_name if interaction.command else None
    if command:
        return f"/{command}"
    return f"component {(interaction.data or {}).get('custom_id', '?')}"
