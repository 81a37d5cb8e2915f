"""Consent as a View: Confirm / Cancel, answerable only by the person who ran /train.

The view is persistent (timeout=None, custom_ids carrying the subject id) and re-registered at
start-up for every draft, so the buttons keep working across a restart. "Timeout means no" is
kept by the draft sweeper: a draft unconfirmed after 15 minutes is deleted with its photos.
"""

from __future__ import annotations

import logging

import discord

from bot.error_handler import reply_error, send_ephemeral
from storage import lifecycle, likeness

log = logging.getLogger(__name__)


class ConsentView(discord.ui.View):
    def __init__(self, subject_id: int, owner_id: int) -> None:
        super().__init__(timeout=None)
        self.subject_id, self.owner_id = subject_id, owner_id
        self.confirm.custom_id = f"consent:confirm:{subject_id}"
        self.cancel.custom_id = f"consent:cancel:{subject_id}"

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if interaction.user.id == self.owner_id:
            return True
        await send_ephemeral(interaction, "Only the person who ran /train can confirm or cancel it.")
        return False

    async def on_error(self, interaction: discord.Interaction, error: Exception, item) -> None:
        await reply_error(interaction, error)

    @discord.ui.button(label="Confirm", style=discord.ButtonStyle.success)
    async def confirm(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        bot = interaction.client
        await interaction.response.defer()  # acknowledge at once; the reply replaces the consent message
        policy_review = await bot.review_required(interaction.guild_id)
        # the same license as the /train reply showed, so the recorded text is the one the user read
        queued = await lifecycle.confirm(bot.db, subject_id=self.subject_id, user_id=interaction.user.id,
                                         queue=bot.storage.queue, review_required=policy_review,
                                         model_license=bot.model_license, likeness_rules=bot.storage.likeness)
        self.stop()
        name = queued.subject.name
        if queued.job is None:
            why = ("A child's likeness is always reviewed by a moderator first"
                   if likeness.review_reason(queued.subject.class_noun, bot.storage.likeness)
                   else "This server reviews new subjects")
            text = (f"Thank you: your consent for **{name}** is recorded. {why}, so a moderator will look at it "
                    "before training; it starts once it is approved.")
            await bot.audit("subject.review_requested", actor_id=interaction.user.id,
                            fields={"subject": f"#{queued.subject.id} {name} ({queued.subject.class_noun})"})
        else:
            text = (f"Thank you: your consent for **{name}** is recorded and training is queued as job "
                    f"#{queued.job.id}, position {queued.position or 1} in the queue. Progress will appear in "
                    "this channel; /status shows it too.")
        await interaction.edit_original_response(content=text, view=None)

    @discord.ui.button(label="Cancel", style=discord.ButtonStyle.secondary)
    async def cancel(self, interaction: discord.Interaction, button: discord.ui.Button) -> None:
        bot = interaction.client
        removed = await lifecycle.discard_draft(bot.db, subject_id=self.subject_id, user_id=interaction.user.id,
                                                data_dir=bot.storage.data_dir)
        self.stop()
        await interaction.response.edit_message(
            content=f"Cancelled: your {removed} photos were deleted. Nothing will be trained.", view=None)
