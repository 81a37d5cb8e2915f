"""/imagine and its Re-roll / Vary buttons: queue a generate job, reply with its place in the queue."""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot import checks, render
from storage import deliveries, lifecycle, subjects
from storage.errors import PromptRefused

log = logging.getLogger(__name__)

TOKEN_TTL = 15 * 60  # how long Discord lets the bot use an interaction's token


async def _reply_queued(interaction: discord.Interaction, queued: lifecycle.QueuedImages, shown_prompt: str) -> None:
    """Answer publicly with the job's place, and remember the reply so the images can replace it."""
    bot = interaction.client
    job = queued.job
    count = job.params.get("n", 1)
    text = (f"<@{interaction.user.id}> **{render.user_text(render.clip(shown_prompt, 300))}**: {count} image"
            f"{'s' if count != 1 else ''} queued as job #{job.id}, position {queued.position or 1}.")
    callback = await interaction.response.send_message(text, allowed_mentions=discord.AllowedMentions.none())
    message_id = callback.message_id if callback is not None else None
    if message_id is None:
        message_id = (await interaction.original_response()).id
    await deliveries.remember_interaction(bot.db, job_id=job.id, channel_id=interaction.channel_id,
                                          application_id=interaction.application_id, token=interaction.token,
                                          expires_at=interaction.created_at.timestamp() + TOKEN_TTL)
    await deliveries.set_status_message(bot.db, job_id=job.id, channel_id=interaction.channel_id,
                                        message_id=message_id)


async def repeat_from_button(interaction: discord.Interaction, *, job_id: int, action: str) -> None:
    """Re-roll and Vary: the same ban, cooldown, blocklist and daily quota as /imagine (storage.lifecycle)."""
    bot = interaction.client
    queued = await lifecycle.repeat_images(bot.db, job_id=job_id, user_id=interaction.user.id, action=action,
                                           channel_id=interaction.channel_id, queue=bot.storage.queue,
                                           limits=bot.limits("imagine"), likeness_rules=bot.storage.likeness,
                                           idempotency_key=f"interaction-{interaction.id}")
    await _reply_queued(interaction, queued, f"{'re-roll' if action == 'reroll' else 'variations'} of #{job_id}")


class Imagine(commands.Cog):
    def __init__(self, bot) -> None:
        self.bot = bot

    @app_commands.command(name="imagine", description="Generate images of your trained subject")
    @app_commands.describe(prompt="e.g. rex in space: name your subject the way you call it",
                           subject="one of your subjects (if the prompt doesn't name one)",
                           count="how many images", seed="a number, to get the same images again")
    @app_commands.guild_only()
    @checks.not_banned()
    @checks.cooldown("imagine")
    async def imagine(self, interaction: discord.Interaction, prompt: app_commands.Range[str, 1, 400],
                      subject: str | None = None, count: app_commands.Range[int, 1, 10] = 1,
                      seed: app_commands.Range[int, 0, 2**32 - 1] | None = None) -> None:
        bot = self.bot
        if count > bot.settings.images_per_request:
            raise PromptRefused(f"At most {bot.settings.images_per_request} images per request here: "
                                "ask for fewer.")
        request = lifecycle.ImageRequest(user_id=interaction.user.id, guild_id=interaction.guild_id,
                                         channel_id=interaction.channel_id, prompt=prompt, subject_name=subject,
                                         count=count, seed=seed)
        queued = await lifecycle.queue_images(bot.db, request, queue=bot.storage.queue, limits=bot.limits("imagine"),
                                              likeness_rules=bot.storage.likeness,
                                              idempotency_key=f"interaction-{interaction.id}")
        await _reply_queued(interaction, queued, prompt)

    @imagine.autocomplete("subject")
    async def subject_names(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        owned = await subjects.list_for_owner(self.bot.db, interaction.user.id, guild_id=interaction.guild_id)
        typed = current.lower().strip()
        ready = sorted(owned, key=lambda s: (s.state != "trained", s.name))
        return [app_commands.Choice(name=f"{s.name} ({s.class_noun}, {s.state.replace('_', ' ')})", value=s.name)
                for s in ready if typed in s.name][:25]


async def setup(bot) -> None:
    await bot.add_cog(Imagine(bot))
