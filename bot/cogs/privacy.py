"""/forget: after a confirmation, delete everything of the user's and say what went."""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot.error_handler import reply_error
from storage import lifecycle

log = logging.getLogger(__name__)


class ForgetView(discord.ui.View):
    """Delete / Keep, for the invoker only; no answer within the timeout means keep."""

    def __init__(self, user_id: int, *, timeout: float = 120.0) -> None:
        super().__init__(timeout=timeout)
        self.user_id = user_id

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        return interaction.user.id == self.user_id

    async def on_error(self, interaction: discord.Interaction, error: Exception, item) -> None:
        await reply_error(interaction, error)

    @discord.ui.button(label="Delete everything", style=discord.ButtonStyle.danger)
    async def delete(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        self.stop()
        await interaction.response.defer()
        bot = interaction.client
        report = await lifecycle.forget_user(bot.db, user_id=self.user_id, data_dir=bot.storage.data_dir,
                                           actor_id=self.user_id)
        await interaction.edit_original_response(
            content=f"Done. Deleted {report.summary()} ({report.files_removed} files on disk). "
                    "Only a note that you asked to be forgotten remains.", view=None)
        await bot.audit("user.forgotten", actor_id=self.user_id, fields={"deleted": report.summary()})

    @discord.ui.button(label="Keep", style=discord.ButtonStyle.secondary)
    async def keep(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        self.stop()
        await interaction.response.edit_message(content="Nothing was deleted.", view=None)


class Privacy(commands.Cog):
    def __init__(self, bot) -> None:
        self.bot = bot

    @app_commands.command(name="forget", description="Delete all your subjects, photos, models and images")
    async def forget(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(
            "This deletes all your subjects, photos, trained models, images, jobs and consent records, "
            "in every server, for good. Are you sure?", view=ForgetView(interaction.user.id), ephemeral=True)


async def setup(bot) -> None:
    await bot.add_cog(Privacy(bot))
