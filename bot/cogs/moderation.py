"""/mod: review queue, consents, usage, audit log, revoke, bans, the guild policy and parked messages.

Guild-only and, by default, shown only to members who can manage the server. What Discord shows is
not a check (a server's Integrations settings can open /mod to everyone), so every subcommand is
also checked here: Manage Server or the guild's moderator role (checks.ensure_moderator).
"""

from __future__ import annotations

import logging
from typing import Literal

import discord
from discord import app_commands
from discord.ext import commands

from bot import checks, render, views
from storage import audit, consent, guilds, lifecycle, likeness, outbox, subjects, usage
from storage.db import now
from storage.errors import DreambotError

log = logging.getLogger(__name__)
REVIEW_BATCH = 5


def _reply(interaction: discord.Interaction, text: str, **kwargs):
    return interaction.response.send_message(text, ephemeral=True,
                                             allowed_mentions=discord.AllowedMentions.none(), **kwargs)


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class Moderation(commands.GroupCog, group_name="mod", group_description="Moderate dreambot in this server"):
    def __init__(self, bot) -> None:
        self.bot = bot
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        """Every /mod subcommand, whatever Discord shows: refused (ephemeral) unless a moderator."""
        await checks.ensure_moderator(interaction)
        return True

    @app_commands.command(name="review", description="Subjects waiting for review, with Approve / Reject")
    async def review(self, interaction: discord.Interaction) -> None:
        held = await subjects.list_for_guild(self.bot.db, interaction.guild_id, state="consented")
        if not held:
            await _reply(interaction, "No subjects are waiting for review.")
            return
        await _reply(interaction, f"{len(held)} subject(s) waiting for review; photos are not shown here.")
        for subject in held[:REVIEW_BATCH]:
            why = likeness.review_reason(subject.class_noun, self.bot.storage.likeness)
            await interaction.followup.send(
                f"**{subject.name}** ({subject.class_noun}) of <@{subject.owner_id}>, #{subject.id}"
                + (f"\nHeld whatever this server's policy: {why}." if why else ""),
                view=views.review_view(subject.id), ephemeral=True, allowed_mentions=discord.AllowedMentions.none())

    @app_commands.command(name="consents", description="Who consented to what, when, and whether it was revoked")
    async def consents(self, interaction: discord.Interaction) -> None:
        found = await consent.for_guild(self.bot.db, interaction.guild_id)
        await _reply(interaction, render.paginate([render.consent_line(c) for c in found], "No consents yet."))

    @app_commands.command(name="usage", description="Jobs, GPU time, images, flagged and withheld images per "
                                                    "user or subject")
    async def usage(self, interaction: discord.Interaction, by: Literal["user", "subject"] = "user") -> None:
        totals = await usage.totals(self.bot.db, by=f"{by}_id", guild_id=interaction.guild_id)
        label = (lambda t: f"<@{t.key}>") if by == "user" else (lambda t: f"subject #{t.key}")
        await _reply(interaction, render.paginate([render.usage_line(t, label(t)) for t in totals], "No usage yet."))

    @app_commands.command(name="audit", description="The newest entries of this server's audit log")
    async def audit_log(self, interaction: discord.Interaction, user: discord.User | None = None) -> None:
        entries = await audit.recent(self.bot.db, guild_id=interaction.guild_id,
                                     target_user_id=user.id if user else None, limit=25)
        await _reply(interaction, render.paginate([render.audit_line(e) for e in entries], "The log is empty."))

    @app_commands.command(name="outbox", description="Bot messages Discord keeps refusing (parked, retried slowly)")
    async def outbox_parked(self, interaction: discord.Interaction) -> None:
        parked = await outbox.list_parked(self.bot.db, guild_id=interaction.guild_id, limit=25)
        t = now()
        await _reply(interaction, render.paginate([render.outbox_line(e, at=t) for e in parked],
                                                  "No parked messages: everything was delivered or is on its way."))

    @app_commands.command(name="revoke", description="Revoke a subject: its model is deleted, generation refused")
    @app_commands.describe(subject_id="the subject's number (#) from /mod review or /mod consents")
    async def revoke(self, interaction: discord.Interaction, subject_id: int, reason: str = "") -> None:
        bot = self.bot
        subject = await lifecycle.revoke(bot.db, subject_id=subject_id, guild_id=interaction.guild_id,
                                         moderator_id=interaction.user.id, reason=reason,
                                         data_dir=bot.storage.data_dir)
        await _reply(interaction, f"Revoked **{subject.name}** (#{subject.id}) of <@{subject.owner_id}>: its running "
                                  "work is stopped, its photos and model are deleted, and it can't be used any more.")
        await bot.audit("subject.revoked", actor_id=interaction.user.id,
                        fields={"subject": f"#{subject.id} {subject.name}", "owner": f"<@{subject.owner_id}>",
                                "reason": reason or "-"})

    @app_commands.command(name="ban", description="Bar a user from dreambot in this server")
    async def ban(self, interaction: discord.Interaction, user: discord.User, reason: str = "") -> None:
        stopped = await lifecycle.ban(self.bot.db, guild_id=interaction.guild_id, user_id=user.id,
                                      by=interaction.user.id, reason=reason, data_dir=self.bot.storage.data_dir)
        await _reply(interaction, f"<@{user.id}> can no longer use dreambot here"
                                  + (f"; {stopped} of their jobs were stopped." if stopped else "."))
        await self.bot.audit("user.banned", actor_id=interaction.user.id,
                             fields={"user": f"<@{user.id}>", "reason": reason or "-"})

    @app_commands.command(name="unban", description="Let a barred user use dreambot here again")
    async def unban(self, interaction: discord.Interaction, user: discord.User) -> None:
        lifted = await guilds.unban(self.bot.db, guild_id=interaction.guild_id, user_id=user.id,
                                    by=interaction.user.id)
        await _reply(interaction, f"<@{user.id}> may use dreambot here again." if lifted
                     else f"<@{user.id}> was not barred.")
        if lifted:
            await self.bot.audit("user.unbanned", actor_id=interaction.user.id, fields={"user": f"<@{user.id}>"})

    @app_commands.command(name="policy", description="Show or change review, quotas, flagged images and the "
                                                     "prompt blocklist")
    @app_commands.describe(review_required="hold new subjects for review", max_subjects="subjects per person "
                           "(0: no limit)", images_per_day="images per person per day (0: no limit)",
                           block="a word to refuse in prompts", unblock="a blocked word to allow again",
                           moderator_role="its members moderate dreambot here too (needs Manage Server; "
                           "@everyone removes it)",
                           nsfw="flagged images: never posted (block), or as spoilers in age-restricted "
                           "channels only")
    async def policy(self, interaction: discord.Interaction, review_required: bool | None = None,
                     max_subjects: app_commands.Range[int, 0, 1000] | None = None,
                     images_per_day: app_commands.Range[int, 0, 100_000] | None = None,
                     block: str | None = None, unblock: str | None = None,
                     moderator_role: discord.Role | None = None,
                     nsfw: Literal["block", "spoiler-in-age-restricted"] | None = None) -> None:
        db, gid, me = self.bot.db, interaction.guild_id, interaction.user.id
        changes: dict = {}
        if moderator_role is not None:  # checked before anything changes: who moderates is the server's call
            if not interaction.permissions.manage_guild:
                raise DreambotError("Only members with the Manage Server permission can set the moderator role.")
            changes["moderator_role_id"] = None if moderator_role.is_default() else moderator_role.id
        if review_required is not None:
            changes["review_required"] = review_required
        if max_subjects is not None:
            changes["max_subjects_per_user"] = max_subjects or None
        if images_per_day is not None:
            changes["max_images_per_day"] = images_per_day or None
        if nsfw is not None:
            changes["nsfw"] = nsfw
        if changes:
            await guilds.set_policy(db, guild_id=gid, by=me, **changes)
        if block:
            await guilds.block_term(db, guild_id=gid, term=block, by=me)
        if unblock and not await guilds.unblock_term(db, guild_id=gid, term=unblock, by=me):
            raise DreambotError(f"{unblock!r} was not on the blocklist.")
        policy = await guilds.policy(db, gid, default_review=self.bot.settings.review_required)
        terms = await guilds.blocklist(db, gid)
        role = policy.moderator_role_id
        mods = f"Manage Server, and the role <@&{role}>" if role else "Manage Server only"
        text = (f"Review required: {'yes' if policy.review_required else 'no'}\n"
                f"Subjects per person: {policy.max_subjects_per_user or 'no limit'}\n"
                f"Images per person per day: {policy.max_images_per_day or 'no limit'}\n"
                f"Moderators: {mods}\n"
                f"{render.nsfw_policy_line(policy.nsfw, checker_off=self.bot.safety_checker_off)}\n"
                f"Blocked in prompts: {', '.join(terms) or 'nothing'}")
        hint = ("\nDiscord shows /mod only to Manage Server by default: allow the role in Server Settings > "
                "Integrations > dreambot." if changes.get("moderator_role_id") else "")
        await _reply(interaction, text + hint)
        if changes or block or unblock:
            await self.bot.audit("guild.policy_changed", actor_id=me, fields={"policy": text})


async def setup(bot) -> None:
    await bot.add_cog(Moderation(bot))
