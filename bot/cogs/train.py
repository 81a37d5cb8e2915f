"""/train: photos in, intake findings and the consent text out, Confirm / Cancel buttons."""

from __future__ import annotations

import asyncio
import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot import checks, photos_intake, render
from bot.consent_view import ConsentView
from storage import consent, intake, lifecycle, subjects
from storage.model_families import UnsupportedModel

log = logging.getLogger(__name__)

Photo = discord.Attachment
OptionalPhoto = discord.Attachment | None


class Train(commands.Cog):
    def __init__(self, bot) -> None:
        self.bot = bot

    @app_commands.command(name="train", description="Teach the model a subject from 3-10 photos of it")
    @app_commands.describe(name="what you call it, e.g. rex", class_noun="what it is: dog, cat, mug, person...",
                           photo1="a photo of the subject", photo2="another photo", photo3="another photo",
                           preset="quick, balanced (default) or faces")
    @app_commands.guild_only()
    @checks.not_banned()
    @checks.cooldown("train")
    async def train(self, interaction: discord.Interaction, name: str, class_noun: str,
                    photo1: Photo, photo2: Photo, photo3: Photo, photo4: OptionalPhoto = None,
                    photo5: OptionalPhoto = None, photo6: OptionalPhoto = None, photo7: OptionalPhoto = None,
                    photo8: OptionalPhoto = None, photo9: OptionalPhoto = None, photo10: OptionalPhoto = None,
                    preset: str | None = None) -> None:
        # Acknowledge first: downloads and checks take longer than Discord's 3 seconds.
        await interaction.response.defer(ephemeral=True, thinking=True)
        bot = self.bot
        given = (photo1, photo2, photo3, photo4, photo5, photo6, photo7, photo8, photo9, photo10)
        attachments = [(f"photo{n}", a) for n, a in enumerate(given, start=1) if a is not None]
        limits = bot.storage.photos
        # Download before anything slow can fail: the attachment URLs expire.
        # Refusals that need no photo come first, before consent is ever shown.
        subjects.normalize_name(name)
        subjects.normalize_class_noun(class_noun)
        lifecycle.check_preset(preset, bot.presets)
        if bot.model_refusal is not None:  # an SD3, Flux, refiner or inpainting base model: no subject can train
            raise UnsupportedModel(bot.model_refusal.what)
        uploads = await photos_intake.download(attachments, limits)
        found = await asyncio.to_thread(intake.inspect, uploads, limits)
        if found.refused:
            raise found.refusal()
        subject = await lifecycle.create_draft(
            bot.db, owner_id=interaction.user.id, guild_id=interaction.guild_id, channel_id=interaction.channel_id,
            name=name, class_noun=class_noun, preset=preset, photos=found.accepted, data_dir=bot.storage.data_dir,
            limits=bot.limits("train"), likeness_rules=bot.storage.likeness)
        text = consent.text_for(name=subject.name, class_noun=subject.class_noun, model_license=bot.model_license)
        await interaction.followup.send(render.intake_report(found.lines, text), ephemeral=True,
                                        view=ConsentView(subject.id, interaction.user.id))


async def setup(bot) -> None:
    await bot.add_cog(Train(bot))
