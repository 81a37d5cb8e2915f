"""/subjects, /status, /cancel and /export: a user's own subjects and jobs."""

from __future__ import annotations

import io
import logging
from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot import checks, exports, render
from storage import jobs, licenses, lifecycle, subjects
from storage.errors import SubjectError

log = logging.getLogger(__name__)
MIB = 1 << 20


class Subjects(commands.Cog):
    def __init__(self, bot) -> None:
        self.bot = bot

    @app_commands.command(name="subjects", description="Your subjects and their state")
    async def list_subjects(self, interaction: discord.Interaction) -> None:
        owned = await subjects.list_for_owner(self.bot.db, interaction.user.id, guild_id=interaction.guild_id)
        # the base model's license closes the list, as it closed the consent text at /train
        footer = "\n\n" + (self.bot.model_license or licenses.unstated()).sentence()
        text = render.paginate([render.subject_line(s) for s in owned],
                               "You have no subjects here yet. Start one with /train.",
                               limit=render.MAX_CONTENT - len(footer))
        await interaction.response.send_message(text + footer, ephemeral=True)

    @app_commands.command(name="status", description="Your jobs and their places in the queue")
    async def status(self, interaction: discord.Interaction) -> None:
        mine = await jobs.statuses(self.bot.db, user_id=interaction.user.id, limit=20)
        lines = [render.job_line(s.job, s.position, s.subject_name) for s in mine]
        await interaction.response.send_message(
            render.paginate(lines, "You have no jobs. /train or /imagine starts one."), ephemeral=True)

    @app_commands.command(name="cancel", description="Cancel one of your queued or running jobs")
    @app_commands.describe(job="the job number /status shows")
    async def cancel(self, interaction: discord.Interaction, job: int) -> None:
        found = await lifecycle.cancel_job(self.bot.db, job_id=job, user_id=interaction.user.id,
                                           data_dir=self.bot.storage.data_dir)
        what = "cancelled" if found.state == "cancelled" else "asked to stop; it stops at its next step"
        await interaction.response.send_message(f"Job #{found.id} {what}.", ephemeral=True)

    @cancel.autocomplete("job")
    async def active_jobs(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[int]]:
        mine = await jobs.list_jobs(self.bot.db, user_id=interaction.user.id, limit=50)
        return [app_commands.Choice(name=f"#{j.id} {j.kind} ({j.state})", value=j.id)
                for j in mine if j.state in jobs.ACTIVE and current in str(j.id)][:25]

    @app_commands.command(name="export", description="Get your subject's LoRA file, sent privately")
    @app_commands.describe(subject="your subject's name", format="diffusers (default) or kohya / AUTOMATIC1111")
    @checks.not_banned()
    async def export(self, interaction: discord.Interaction, subject: str,
                     format: Literal["diffusers", "kohya"] = "diffusers") -> None:
        bot = self.bot
        await interaction.response.defer(ephemeral=True, thinking=True)
        found = await subjects.find(bot.db, owner_id=interaction.user.id, name=subject,
                                    guild_id=interaction.guild_id)
        if found is None:
            raise SubjectError(f"You have no subject called {subject!r}. /subjects lists yours.")
        data, filename = await exports.export_file(bot.db, found, format, bot.storage.data_dir)
        size = len(data)
        if size > bot.settings.max_attachment_mb * MIB:
            raise SubjectError(f"The {format} file is {size / MIB:.1f} MB, over Discord's "
                               f"{bot.settings.max_attachment_mb} MB limit. Ask the bot's operator for it.")
        # the base model's use restrictions pass on with the file (its header records the license too)
        terms = (bot.model_license or licenses.unstated()).sentence()
        await interaction.followup.send(f"Your **{found.name}** LoRA ({format} format). Keep it private: it can "
                                        f"make images of your subject. {terms} Its use restrictions apply to this "
                                        "file and to whoever you give it to.",
                                        file=discord.File(io.BytesIO(data), filename=filename), ephemeral=True)


async def setup(bot) -> None:
    await bot.add_cog(Subjects(bot))
