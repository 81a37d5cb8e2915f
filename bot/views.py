"""Buttons on the bot's channel messages, persistent across restarts as DynamicItems.

Each custom_id carries what the button acts on (job, subject, artifact), so a click after a
restart still works: `bot.add_dynamic_items(*DYNAMIC_ITEMS)` at start-up is all it takes.
Every callback checks who clicked; errors are answered like the commands' (`guarded`).
"""

from __future__ import annotations

import logging
import re

import discord

from bot import checks, render
from bot.error_handler import guarded, send_ephemeral
from storage import lifecycle

log = logging.getLogger(__name__)


class CancelJob(discord.ui.DynamicItem[discord.ui.Button], template=r"job:cancel:(?P<job_id>\d+)"):
    def __init__(self, job_id: int) -> None:
        super().__init__(discord.ui.Button(label="Cancel", style=discord.ButtonStyle.danger,
                                           custom_id=f"job:cancel:{job_id}"))
        self.job_id = job_id

    @classmethod
    async def from_custom_id(cls, interaction, item, match: re.Match[str]):
        return cls(int(match["job_id"]))

    @guarded
    async def callback(self, interaction: discord.Interaction) -> None:
        bot = interaction.client
        job = await lifecycle.cancel_job(bot.db, job_id=self.job_id, user_id=interaction.user.id,
                                         data_dir=bot.storage.data_dir)
        what = "cancelled" if job.state == "cancelled" else "asked to stop; it stops at the next step"
        await send_ephemeral(interaction, f"Job #{job.id} {what}.")


class ChooseAdapter(discord.ui.DynamicItem[discord.ui.Button],
                    template=r"subject:use:(?P<subject_id>\d+):(?P<artifact_id>\d+)"):
    def __init__(self, subject_id: int, artifact_id: int, label: str = "Keep") -> None:
        super().__init__(discord.ui.Button(label=label, style=discord.ButtonStyle.primary,
                                           custom_id=f"subject:use:{subject_id}:{artifact_id}"))
        self.subject_id, self.artifact_id = subject_id, artifact_id

    @classmethod
    async def from_custom_id(cls, interaction, item, match: re.Match[str]):
        return cls(int(match["subject_id"]), int(match["artifact_id"]), item.label or "Keep")

    @guarded
    async def callback(self, interaction: discord.Interaction) -> None:
        bot = interaction.client
        subject, label = await lifecycle.choose_adapter(bot.db, subject_id=self.subject_id, user_id=interaction.user.id,
                                                       artifact_id=self.artifact_id, data_dir=bot.storage.data_dir)
        await send_ephemeral(interaction, f"**{subject.name}** now uses {label}. Try it with "
                                          f"`/imagine prompt:{subject.name} in space`.")


class Discard(discord.ui.DynamicItem[discord.ui.Button], template=r"subject:discard:(?P<subject_id>\d+)"):
    def __init__(self, subject_id: int) -> None:
        super().__init__(discord.ui.Button(label="Discard", style=discord.ButtonStyle.danger,
                                           custom_id=f"subject:discard:{subject_id}"))
        self.subject_id = subject_id

    @classmethod
    async def from_custom_id(cls, interaction, item, match: re.Match[str]):
        return cls(int(match["subject_id"]))

    @guarded
    async def callback(self, interaction: discord.Interaction) -> None:
        bot = interaction.client
        subject = await lifecycle.discard_trained(bot.db, subject_id=self.subject_id, user_id=interaction.user.id,
                                                 data_dir=bot.storage.data_dir)
        await send_ephemeral(interaction, f"Discarded what was trained for **{subject.name}**; nothing of it "
                                          "can be used. /forget deletes the photos too.")


class Imagine(discord.ui.DynamicItem[discord.ui.Button], template=r"imagine:(?P<action>reroll|vary):(?P<job_id>\d+)"):
    def __init__(self, action: str, job_id: int) -> None:
        label = "Re-roll" if action == "reroll" else "Vary"
        super().__init__(discord.ui.Button(label=label, style=discord.ButtonStyle.secondary,
                                           custom_id=f"imagine:{action}:{job_id}"))
        self.action, self.job_id = action, job_id

    @classmethod
    async def from_custom_id(cls, interaction, item, match: re.Match[str]):
        return cls(match["action"], int(match["job_id"]))

    @guarded
    async def callback(self, interaction: discord.Interaction) -> None:
        from bot.cogs.imagine import repeat_from_button  # the cog owns the reply flow

        await repeat_from_button(interaction, job_id=self.job_id, action=self.action)


class Review(discord.ui.DynamicItem[discord.ui.Button], template=r"review:(?P<action>approve|reject):(?P<subject_id>\d+)"):
    def __init__(self, action: str, subject_id: int) -> None:
        style = discord.ButtonStyle.success if action == "approve" else discord.ButtonStyle.danger
        super().__init__(discord.ui.Button(label=action.capitalize(), style=style,
                                           custom_id=f"review:{action}:{subject_id}"))
        self.action, self.subject_id = action, subject_id

    @classmethod
    async def from_custom_id(cls, interaction, item, match: re.Match[str]):
        return cls(match["action"], int(match["subject_id"]))

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        try:
            await checks.ensure_moderator(interaction)  # the same rule as every /mod subcommand
        except checks.Refused as refused:
            await send_ephemeral(interaction, str(refused.error))
            return False
        return True

    @guarded
    async def callback(self, interaction: discord.Interaction) -> None:
        bot = interaction.client
        queued = await lifecycle.review(bot.db, subject_id=self.subject_id, guild_id=interaction.guild_id,
                                        moderator_id=interaction.user.id, approve=self.action == "approve",
                                        queue=bot.storage.queue, data_dir=bot.storage.data_dir)
        subject = queued.subject
        if queued.job is None:
            text = f"Rejected **{subject.name}** (#{subject.id}) of <@{subject.owner_id}>."
        else:
            text = (f"Approved **{subject.name}** (#{subject.id}) of <@{subject.owner_id}>: training queued "
                    f"as job #{queued.job.id}.")
        await interaction.response.edit_message(content=text, view=None,
                                                allowed_mentions=discord.AllowedMentions.none())
        verdict = "approved" if queued.job is not None else "rejected"
        # Posted in the channel of the /train: the name is the owner's text, escaped like every public one.
        await lifecycle.tell_owner(bot.db, subject, f"<@{subject.owner_id}> the moderators {verdict} your subject "
                                  f"**{render.user_text(subject.name)}**." + (" Training is queued." if queued.job
                                                                            else ""))
        await bot.audit(f"subject.{verdict}", actor_id=interaction.user.id,
                        fields={"subject": f"#{subject.id} {subject.name}", "owner": f"<@{subject.owner_id}>"})


DYNAMIC_ITEMS = (CancelJob, ChooseAdapter, Discard, Imagine, Review)


def _view(*items: discord.ui.Item) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for item in items:
        view.add_item(item)
    return view


def cancel_job_view(job_id: int) -> discord.ui.View:
    return _view(CancelJob(job_id))


def final_grid_view(subject_id: int, final_artifact_id: int | None, checkpoints: list[dict]) -> discord.ui.View:
    """Keep the final adapter, fall back to one of the (at most three newest) checkpoints, or discard."""
    items: list[discord.ui.Item] = []
    if final_artifact_id:
        items.append(ChooseAdapter(subject_id, int(final_artifact_id), "Keep final"))
    newest = sorted(checkpoints, key=lambda c: c.get("step", 0))[-3:]
    items += [ChooseAdapter(subject_id, int(c["artifact_id"]), f"Use step {c.get('step', '?')}") for c in newest]
    return _view(*items, Discard(subject_id))


def imagine_view(job_id: int) -> discord.ui.View:
    return _view(Imagine("reroll", job_id), Imagine("vary", job_id))


def review_view(subject_id: int) -> discord.ui.View:
    return _view(Review("approve", subject_id), Review("reject", subject_id))


