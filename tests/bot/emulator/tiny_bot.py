"""A tiny real discord.py bot for the emulator tests, and a helper to run it against one.

Its commands exercise one Discord feature each: replies, ephemeral replies, deferral
with a file follow-up, attachment download, buttons, autocomplete, modals, sub-command
groups with permissions, and progress edits.
"""

from __future__ import annotations

import asyncio
import io

import discord
from discord import app_commands
from discord.ext import commands


class ConfirmView(discord.ui.View):
    def __init__(self) -> None:
        super().__init__(timeout=30)

    @discord.ui.button(label="Confirm", style=discord.ButtonStyle.success, custom_id="confirm")
    async def confirm(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        await interaction.response.edit_message(content=f"Confirmed by {interaction.user.name}", view=None)


class PresetView(discord.ui.View):
    @discord.ui.select(
        custom_id="preset",
        placeholder="Preset",
        options=[discord.SelectOption(label=n, value=n) for n in ("quick", "balanced", "faces")],
    )
    async def preset(self, interaction: discord.Interaction, select: discord.ui.Select) -> None:
        await interaction.response.send_message(f"preset {select.values[0]}", ephemeral=True)


class ReportModal(discord.ui.Modal, title="Report an image"):
    reason = discord.ui.TextInput(label="Reason", custom_id="reason", max_length=200)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"Reported: {self.reason.value}", ephemeral=True)


class TinyBot(commands.Bot):
    def __init__(self) -> None:
        super().__init__(command_prefix="!", intents=discord.Intents.default(), guild_ready_timeout=0.05)
        self.errors: list[Exception] = []
        self.release = asyncio.Event()
        add_commands(self, self.tree)

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """discord.py sleeps 5 s before every re-IDENTIFY (Discord's identify limit); tests need not."""


def add_commands(bot: TinyBot, tree: app_commands.CommandTree) -> None:
    @tree.command(description="Answers pong")
    async def ping(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("pong")

    @tree.command(description="Answers only you")
    async def secret(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("just for you", ephemeral=True)

    @tree.command(description="Thinks, then sends a file")
    async def render(interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)
        await interaction.followup.send("done", file=discord.File(io.BytesIO(b"\x89PNG fake"), "result.png"))

    @tree.command(description="Reads an attached photo")
    @app_commands.describe(photo="A photo", caption="Words")
    async def upload(interaction: discord.Interaction, photo: discord.Attachment, caption: str = "") -> None:
        data = await photo.read()
        await interaction.response.send_message(
            f"{photo.filename} {len(data)} {photo.content_type} {caption}"
        )

    @tree.command(description="Counts attached photos")
    async def album(
        interaction: discord.Interaction, first: discord.Attachment, second: discord.Attachment | None = None
    ) -> None:
        names = [a.filename for a in (first, second) if a is not None]
        await interaction.response.send_message(", ".join(names))

    @tree.command(description="Replies with a file, privately")
    async def grid(interaction: discord.Interaction) -> None:
        file = discord.File(io.BytesIO(b"grid"), "grid.jpg")
        await interaction.response.send_message("your grid", file=file, ephemeral=True)

    @tree.command(description="Asks for confirmation")
    async def confirm(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("Proceed?", view=ConfirmView())

    @tree.command(description="Offers presets")
    async def presets(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("Pick one", view=PresetView())

    @tree.command(description="Opens a report form")
    async def report(interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(ReportModal())

    @tree.command(description="Imagines a subject")
    @app_commands.describe(subject="Whose model", steps="Sampler steps")
    async def imagine(
        interaction: discord.Interaction, subject: str, steps: app_commands.Range[int, 1, 50] = 25
    ) -> None:
        await interaction.response.send_message(f"imagining {subject} in {steps} steps")

    @imagine.autocomplete("subject")
    async def subjects(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        names = ["rex", "rover", "whiskers"]
        return [app_commands.Choice(name=n, value=n) for n in names if n.startswith(current)]

    @tree.command(description="Reports progress by editing its reply")
    async def progress(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("0%")
        for pct in (50, 100):
            await interaction.edit_original_response(content=f"{pct}%")

    @tree.command(description="Waits for the test, then follows up")
    async def slow(interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        await bot.release.wait()
        try:
            await interaction.followup.send("finally")
        except discord.HTTPException as exc:
            bot.errors.append(exc)

    mod = app_commands.Group(
        name="mod", description="Moderation", default_permissions=discord.Permissions(manage_messages=True)
    )

    @mod.command(description="Reviews a subject")
    async def review(interaction: discord.Interaction, subject: str) -> None:
        await interaction.response.send_message(f"reviewing {subject}", ephemeral=True)

    tree.add_command(mod)
