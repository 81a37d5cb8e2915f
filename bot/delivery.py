"""Outbox -> Discord: the worker's events become status edits, grids and results, each exactly once.

An event is marked delivered only after Discord accepted it. A crash between the two means the
event is sent again on restart, so every new message carries a nonce derived from the event id
with `enforce_nonce` (discord.py sets it with `nonce=`): Discord answers a repeat with the first
message instead of posting another. Edits (the status message, the command's reply) are
idempotent. Results go into the command's own reply while its interaction token works (15 minutes),
afterwards to the job's channel with the bot's token.

A refused event is never dropped: storage.outbox sets when to try it next (backoff, then parked
at the slowest cadence), and later events of its job wait behind it. User-written text (prompts,
subject names, error texts) goes through `render.user_text`, so it never renders as markdown.

Images the safety checker flagged (artifact meta "nsfw") are decided here, per artifact: posted only
as spoilers, only in a channel Discord marks age-restricted, and only when the guild's policy is
"spoiler-in-age-restricted"; otherwise withheld. The user is told privately how many were withheld
(those the worker dropped or greyed out, plus those held back here): an ephemeral follow-up while the
command's interaction token works, else a DM. What the bot held back is counted in usage once per event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import discord

from bot import posting, render, views
from storage import artifacts, deliveries, files, guilds, jobs, metrics, outbox, subjects, usage
from storage.db import now
from storage.errors import JobNotFound
from storage.outbox import Event

if TYPE_CHECKING:
    from bot.bot import DreamBot

log = logging.getLogger(__name__)
SPOILER_MODE = "spoiler-in-age-restricted"


def nonce(event_id: int, part: str = "") -> str:
    """At most 25 characters, as Discord allows; the same event always gives the same nonce."""
    return f"dreambot{part}-{event_id}"


@dataclass(frozen=True)
class Screened:
    """What of a message's artifacts may be shown here: their bytes, which go behind a spoiler, how many held."""
    ids: list[int]
    blobs: list[bytes]
    spoilers: list[bool]
    held: int


def age_restricted(channel: object) -> bool:
    """Whether Discord marks the channel age-restricted (a thread follows its parent); never a DM."""
    is_nsfw = getattr(channel, "is_nsfw", None)
    return bool(callable(is_nsfw) and is_nsfw())


class Deliverer:
    def __init__(self, bot: DreamBot, *, poll_seconds: float = 1.0) -> None:
        self.bot = bot
        self.poll_seconds = poll_seconds
        self.wake = asyncio.Event()

    async def run(self) -> None:
        """Deliver forever; a failing round is logged and retried, never fatal."""
        await self.bot.wait_until_ready()
        while True:
            try:
                delivered = await self.deliver_pending()
            except Exception:
                log.exception("outbox delivery round failed; retrying")
                delivered = 0
            if not delivered:
                self.wake.clear()
                try:
                    await asyncio.wait_for(self.wake.wait(), self.poll_seconds)
                except TimeoutError:
                    pass

    async def deliver_pending(self) -> int:
        """One pass over the due events, in order; returns how many were handled."""
        db = self.bot.db
        events = await outbox.pending(db, limit=50)
        stuck: set[int | None] = set()  # a job whose event failed waits, so its events stay in order
        latest_progress = {e.job_id: e.id for e in events if e.kind == "progress"}
        handled = 0
        for event in events:
            if event.job_id is not None and event.job_id in stuck:
                continue
            try:
                if event.kind != "progress" or latest_progress[event.job_id] == event.id:
                    await self.deliver(event)
            except Exception as exc:  # noqa: BLE001 - any refusal must not stop the other events
                await self._failed(event, exc)
                stuck.add(event.job_id)
                continue
            await outbox.mark_delivered(db, event.id)
            handled += 1
        return handled

    async def _failed(self, event: Event, exc: Exception) -> None:
        """Count the try; the event comes back after its backoff, parked ones at the slowest cadence."""
        metrics.OUTBOX_FAILURES.labels(kind=event.kind).inc()
        after = await outbox.mark_attempt_failed(self.bot.db, event.id, repr(exc),
                                                 cfg=self.bot.storage.outbox)
        if after is None:
            return
        if after.parked and not event.parked:
            log.error("parked outbox event %s (%s) after %d attempts; it is tried about every %.0f s until "
                      "Discord takes it (/mod outbox, `dreambot outbox list`): %r", event.id, event.kind,
                      after.attempts, self.bot.storage.outbox.max_seconds, exc)
        else:
            log.warning("could not deliver outbox event %s (%s), attempt %d; next in %.0f s: %r", event.id,
                        event.kind, after.attempts, after.next_attempt_at - now(), exc)

    async def deliver(self, event: Event) -> None:
        handler = getattr(self, f"_on_{event.kind}", None)
        if handler is None:
            log.warning("no delivery for outbox events of kind %r; skipped", event.kind)
            return
        await handler(event)

    # -- training ------------------------------------------------------------------

    async def _on_progress(self, event: Event) -> None:
        p = event.payload
        name = await self._subject_name(event.job_id)
        text = render.training_status(name, step=int(p.get("step", 0)), total=int(p.get("total", 0)),
                                      eta_seconds=p.get("eta_seconds"), message=p.get("message") or "",
                                      loss=p.get("loss"))
        await self._status(event, text, views.cancel_job_view(event.job_id))

    async def _on_grid(self, event: Event) -> None:
        p = event.payload
        if p.get("final"):
            return  # the final grid comes with train_done, with its buttons
        channel = await self._channel(event)
        if channel is None:
            return
        name = await self._subject_name(event.job_id)
        shown = await self._screen(event, [p["artifact_id"]])
        if shown.blobs:
            content = f"**{render.user_text(name)}**: sample grid at step {p.get('step')}"
            await posting.send_images(channel.send, shown.blobs, limit_mb=self.bot.settings.max_attachment_mb,
                                      content=content, name=f"grid-step{p.get('step')}", nonce=nonce(event.id),
                                      spoilers=shown.spoilers)
        await self._tell_withheld(event, await self._greyed(p["artifact_id"], p) + shown.held)

    async def _on_train_done(self, event: Event) -> None:
        p = event.payload
        job = await jobs.get(self.bot.db, event.job_id)
        subject = await subjects.get(self.bot.db, p.get("subject_id") or job.subject_id)
        name = render.user_text(subject.name)
        await self._status(event, f"Training **{name}**: {render.progress_bar(1, 1)}\ndone.", None)
        channel = await self._channel(event)
        if channel is None:
            return
        checkpoints = [c for c in p.get("checkpoints", []) if c.get("artifact_id")]
        content = (f"<@{event.user_id}> **{name}** is trained. Keep the final version, or fall back "
                   "to an earlier checkpoint if the samples look overcooked (too close to your photos). "
                   f"Then try it: `/imagine prompt:{subject.name} in space`")
        view = views.final_grid_view(subject.id, p.get("adapter_artifact_id"), checkpoints)
        grid_id = p.get("grid_artifact_id")
        shown = await self._screen(event, [grid_id] if grid_id else [])
        if shown.held:
            content += "\nThe final sample grid is not shown: the safety checker flagged it."
        await posting.send_images(channel.send, shown.blobs, limit_mb=self.bot.settings.max_attachment_mb,
                                  content=render.clip(content), name=f"{subject.name}-final-grid",
                                  nonce=nonce(event.id), view=view, mention=event.user_id, spoilers=shown.spoilers)
        await self._tell_withheld(event, (await self._greyed(grid_id, {}) if grid_id else 0) + shown.held)

    # -- generation --------------------------------------------------------------------

    async def _on_images(self, event: Event) -> None:
        p = event.payload
        ids = list(p.get("image_artifact_ids") or [])[: posting.MAX_FILES]
        shown = await self._screen(event, ids)
        seed_of = dict(zip(ids, p.get("seeds") or [], strict=False))
        withheld = int(p.get("withheld") or 0) + shown.held
        asked = await self._asked_prompt(event.job_id) or p.get("prompt", "")
        content = f"<@{event.user_id}> **{render.user_text(render.clip(asked, 300))}**\n"
        if shown.blobs:
            content += "seeds: " + (", ".join(str(seed_of[a]) for a in shown.ids if a in seed_of) or "random")
        else:  # the request is still answered, publicly, when nothing of it can be shown
            content += "No images to show: the safety checker flagged them."
        blobs, spoilers = shown.blobs, shown.spoilers
        view = views.imagine_view(event.job_id)
        limit = self.bot.settings.max_attachment_mb
        record = await deliveries.get(self.bot.db, event.job_id)
        if record is not None and record.token_valid(now()) and record.status_message_id:
            webhook = posting.interaction_webhook(self.bot, record.application_id, record.interaction_token)
            try:
                await posting.edit_with_images(webhook, record.status_message_id, blobs, limit_mb=limit,
                                               content=content, name="image", view=view, spoilers=spoilers)
                await self._tell_withheld(event, withheld, webhook=webhook)
                await deliveries.forget_interaction(self.bot.db, event.job_id)
                return
            except (discord.NotFound, discord.Forbidden, discord.HTTPException) as exc:
                if isinstance(exc, discord.HTTPException) and exc.status not in (401, 403, 404):
                    raise
                log.info("interaction token of job %s no longer works (%s); posting to the channel",
                         event.job_id, exc.status)
                await deliveries.forget_interaction(self.bot.db, event.job_id)
        channel = await self._channel(event)
        if channel is None:
            return
        await posting.send_images(channel.send, blobs, limit_mb=limit, content=content, name="image",
                                  nonce=nonce(event.id), view=view, mention=event.user_id, spoilers=spoilers)
        await self._tell_withheld(event, withheld)

    async def _asked_prompt(self, job_id: int | None) -> str | None:
        """The prompt in the user's own words ("rex in space"), not the token form the worker used."""
        try:
            return (await jobs.get(self.bot.db, job_id)).params.get("request") if job_id else None
        except JobNotFound:
            return None

    # -- endings ---------------------------------------------------------------------

    async def _on_failed(self, event: Event) -> None:
        error = render.user_text(render.clip(str(event.payload.get("error") or "unknown error"), 900))
        await self._ending(event, f"failed: {error}",
                           f"<@{event.user_id}> job #{event.job_id} failed: {error}\n"
                           "Nothing of yours was lost. Check the advice above, then try again; "
                           "/status lists your jobs.")

    async def _on_cancelled(self, event: Event) -> None:
        await self._ending(event, "cancelled.", f"<@{event.user_id}> job #{event.job_id} was cancelled.")

    async def _on_notice(self, event: Event) -> None:
        channel = await self._channel(event)
        if channel is not None:
            await channel.send(render.clip(str(event.payload.get("text", ""))), nonce=nonce(event.id),
                               allowed_mentions=discord.AllowedMentions.none())

    async def _ending(self, event: Event, status: str, text: str) -> None:
        record = await deliveries.get(self.bot.db, event.job_id) if event.job_id else None
        if record is not None and record.status_message_id:
            name = render.user_text(await self._subject_name(event.job_id))
            await self._status(event, render.clip(f"Training **{name}**: {status}"), None)
        channel = await self._channel(event)
        if channel is not None:
            await channel.send(render.clip(text), nonce=nonce(event.id),
                               allowed_mentions=posting.mention_only(event.user_id))

    # -- helpers -----------------------------------------------------------------------

    async def _status(self, event: Event, text: str, view: discord.ui.View | None) -> None:
        """Edit the job's one status message, creating it the first time."""
        channel = await self._channel(event)
        if channel is None:
            return
        record = await deliveries.get(self.bot.db, event.job_id)
        if record is not None and record.status_message_id and record.channel_id == channel.id:
            try:
                await channel.get_partial_message(record.status_message_id).edit(content=text, view=view)
                return
            except discord.NotFound:
                log.info("status message of job %s was deleted; posting a new one", event.job_id)
        msg = await channel.send(text, view=view, nonce=nonce(event.id, "s"))
        await deliveries.set_status_message(self.bot.db, job_id=event.job_id, channel_id=channel.id,
                                            message_id=msg.id)

    async def _channel(self, event: Event) -> discord.abc.Messageable | None:
        bot = self.bot
        if event.channel_id:
            return bot.get_channel(event.channel_id) or await bot.fetch_channel(event.channel_id)
        if event.user_id:
            user = bot.get_user(event.user_id) or await bot.fetch_user(event.user_id)
            return user.dm_channel or await user.create_dm()
        return None

    async def _subject_name(self, job_id: int | None) -> str:
        try:
            job = await jobs.get(self.bot.db, job_id)
            return (await subjects.get(self.bot.db, job.subject_id)).name if job.subject_id else "your subject"
        except Exception:  # noqa: BLE001 - a name is decoration; the job may be gone (forgotten user)
            return "your subject"

    async def _artifact(self, artifact_id: int) -> artifacts.Artifact:
        art = await artifacts.get(self.bot.db, artifact_id)
        if art is None:
            raise LookupError(f"artifact {artifact_id} is gone")
        return art

    # -- flagged images ----------------------------------------------------------------

    async def _screen(self, event: Event, artifact_ids: Sequence[int]) -> Screened:
        """The artifacts that may be shown where the event goes: a flagged one only as a spoiler, in an
        age-restricted channel of a guild whose policy allows it; the others are held back and counted."""
        ids, blobs, spoilers, held = [], [], [], 0
        allowed: bool | None = None  # asked only when a flagged artifact needs it
        for artifact_id in artifact_ids:
            art = await self._artifact(artifact_id)
            flagged = bool(art.meta.get("nsfw"))
            if flagged and allowed is None:
                allowed = await self._flagged_allowed(event)
            if flagged and not allowed:
                held += 1
                continue
            ids.append(artifact_id)
            blobs.append(await asyncio.to_thread(files.read_uncached, self.bot.storage.data_dir, art.path))
            spoilers.append(flagged)
        await usage.record_withheld(self.bot.db, event_id=event.id, job_id=event.job_id, count=held)
        return Screened(ids=ids, blobs=blobs, spoilers=spoilers, held=held)

    async def _flagged_allowed(self, event: Event) -> bool:
        if await guilds.nsfw_mode(self.bot.db, event.guild_id) != SPOILER_MODE:
            return False
        try:
            return age_restricted(await self._channel(event))
        except discord.HTTPException:  # a channel the bot can't see any more is not one it may post in
            return False

    async def _greyed(self, artifact_id: int, payload: dict) -> int:
        """Tiles of a sample grid the worker greyed out because the checker flagged them."""
        art = await artifacts.get(self.bot.db, artifact_id)
        meta = art.meta if art is not None else {}
        return int(meta.get("withheld", payload.get("withheld")) or 0)

    async def _tell_withheld(self, event: Event, count: int, *, webhook: discord.Webhook | None = None) -> None:
        """Tell the user privately how many images nobody was shown: an ephemeral follow-up through the
        command's webhook while it works, else a DM. A user who doesn't take DMs is not told (logged)."""
        if count <= 0 or not event.user_id:
            return
        text = render.withheld_notice(count, job_id=event.job_id,
                                      mode=await guilds.nsfw_mode(self.bot.db, event.guild_id))
        if webhook is not None:
            try:
                await webhook.send(text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none())
                return
            except discord.HTTPException as exc:
                if exc.status not in (401, 403, 404):
                    raise
        try:
            user = self.bot.get_user(event.user_id) or await self.bot.fetch_user(event.user_id)
            dm = user.dm_channel or await user.create_dm()
            await dm.send(text, nonce=nonce(event.id, "w"), allowed_mentions=discord.AllowedMentions.none())
        except (discord.Forbidden, discord.NotFound) as exc:
            log.info("could not tell user %s privately about %d withheld images (%s)", event.user_id, count,
                     exc.status)
