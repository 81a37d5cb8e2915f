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
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import discord

from bot import posting, render, views
from storage import artifacts, deliveries, files, jobs, outbox, subjects
from storage.db import now
from storage.errors import JobNotFound
from storage.outbox import Event

if TYPE_CHECKING:
    from bot.bot import DreamBot

log = logging.getLogger(__name__)


def nonce(event_id: int, part: str = "") -> str:
    """At most 25 characters, as Discord allows; the same event always gives the same nonce."""
    return f"dreambot{part}-{event_id}"


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
        data = await self._artifact_bytes(p["artifact_id"])
        content = f"**{render.user_text(name)}**: sample grid at step {p.get('step')}"
        await posting.send_images(channel.send, [data], limit_mb=self.bot.settings.max_attachment_mb,
                                  content=content,
                                  name=f"grid-step{p.get('step')}", nonce=nonce(event.id))

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
        blobs = [await self._artifact_bytes(p["grid_artifact_id"])] if p.get("grid_artifact_id") else []
        await posting.send_images(channel.send, blobs, limit_mb=self.bot.settings.max_attachment_mb,
                                  content=content, name=f"{subject.name}-final-grid", nonce=nonce(event.id),
                                  view=view, mention=event.user_id)

    # -- generation --------------------------------------------------------------------

    async def _on_images(self, event: Event) -> None:
        p = event.payload
        ids = list(p.get("image_artifact_ids") or [])
        blobs = [await self._artifact_bytes(a) for a in ids[: posting.MAX_FILES]]
        seeds = ", ".join(str(s) for s in p.get("seeds") or []) or "random"
        asked = await self._asked_prompt(event.job_id) or p.get("prompt", "")
        content = f"<@{event.user_id}> **{render.user_text(render.clip(asked, 300))}**\nseeds: {seeds}"
        view = views.imagine_view(event.job_id)
        limit = self.bot.settings.max_attachment_mb
        record = await deliveries.get(self.bot.db, event.job_id)
        if record is not None and record.token_valid(now()) and record.status_message_id:
            webhook = posting.interaction_webhook(self.bot, record.application_id, record.interaction_token)
            try:
                await posting.edit_with_images(webhook, record.status_message_id, blobs, limit_mb=limit,
                                               content=content, name="image", view=view)
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
                                  nonce=nonce(event.id), view=view, mention=event.user_id)

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

    async def _artifact_bytes(self, artifact_id: int) -> bytes:
        art = await artifacts.get(self.bot.db, artifact_id)
        if art is None:
            raise LookupError(f"artifact {artifact_id} is gone")
        return await asyncio.to_thread(files.resolve(self.bot.storage.data_dir, art.path).read_bytes)
