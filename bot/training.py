"""The life of a subject from the bot's side, without Discord: stage, confirm, review, choose, expire.

Nothing trains without a recorded consent: `confirm` records it before the job is queued, and a
subject held for review is queued only when a moderator approves it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from storage import artifacts, audit, consent, drafts, files, guilds, jobs, outbox, subjects
from storage.config import QueueConfig
from storage.errors import QueueFull, QuotaReached, SubjectError
from storage.photos import CleanPhoto, store_photo

log = logging.getLogger(__name__)

DRAFT_TTL_SECONDS = 15 * 60  # an unconfirmed draft and its photos are deleted after this
GONE = "This request has expired or was cancelled, and its photos were deleted. Run /train again."


@dataclass(frozen=True)
class Queued:
    subject: subjects.Subject
    job: jobs.Job | None  # None while held for review
    position: int | None


async def check_subject_quota(db: aiosqlite.Connection, *, owner_id: int, guild_id: int | None,
                              policy: guilds.Policy | None) -> None:
    if policy is None or policy.max_subjects_per_user is None:
        return
    mine = [s for s in await subjects.list_for_owner(db, owner_id, guild_id=guild_id)
            if s.state not in ("rejected", "revoked")]
    if len(mine) >= policy.max_subjects_per_user:
        raise QuotaReached(f"You have {len(mine)} subjects here and this server allows "
                           f"{policy.max_subjects_per_user}. Delete yours with /forget, or ask a moderator.")


async def stage_draft(db: aiosqlite.Connection, *, owner_id: int, guild_id: int | None, channel_id: int | None,
                      name: str, class_noun: str, preset: str | None, photos: list[CleanPhoto],
                      data_dir: Path) -> subjects.Subject:
    """A draft subject holding the cleaned photos; deleted again if anything fails half-way."""
    subject = await subjects.create(db, owner_id=owner_id, guild_id=guild_id, name=name, class_noun=class_noun)
    try:
        for photo in photos:
            sha, path = await asyncio.to_thread(store_photo, data_dir, photo)
            await subjects.add_photo(db, subject_id=subject.id, sha256=sha, path=path, width=photo.width,
                                     height=photo.height, findings=list(photo.findings))
        await drafts.save_request(db, subject_id=subject.id, preset=preset, channel_id=channel_id)
    except BaseException:
        await drafts.discard(db, subject_id=subject.id, data_dir=data_dir)
        raise
    return subject


async def _owned_draft(db: aiosqlite.Connection, subject_id: int, user_id: int) -> subjects.Subject:
    try:
        subject = await subjects.get(db, subject_id)
    except SubjectError:
        raise SubjectError(GONE) from None
    if subject.owner_id != user_id:
        raise SubjectError("Only the person who ran /train can answer this.")
    if subject.state != "draft":
        raise SubjectError(f"{subject.name!r} was already confirmed; /subjects shows where it is.")
    return subject


async def confirm(db: aiosqlite.Connection, *, subject_id: int, user_id: int, queue: QueueConfig,
                  review_required: bool) -> Queued:
    """Record consent to the exact text shown, then queue training (or hold it for review)."""
    subject = await _owned_draft(db, subject_id, user_id)
    active = [j for j in await jobs.list_jobs(db, user_id=user_id, limit=100) if j.state in jobs.ACTIVE]
    if not review_required and len(active) >= queue.max_queued_per_user:
        raise QueueFull(len(active), queue.max_queued_per_user)
    text = consent.text_for(name=subject.name, class_noun=subject.class_noun)
    target = "pending_review" if review_required else "queued"
    moved = await subjects.transition(db, subject_id=subject.id, from_states=("draft",), to=target)
    if moved is None:  # a second click raced this one
        raise SubjectError(f"{subject.name!r} was already confirmed; /subjects shows where it is.")
    await consent.grant(db, subject_id=subject.id, user_id=user_id, guild_id=subject.guild_id, text=text)
    if review_required:
        return Queued(subject=moved, job=None, position=None)
    return await enqueue_training(db, moved, queue=queue)


async def enqueue_training(db: aiosqlite.Connection, subject: subjects.Subject, *, queue: QueueConfig) -> Queued:
    await consent.require(db, subject.id)
    request = await drafts.request_for(db, subject.id)
    params = {"preset": request.preset} if request and request.preset else {"preset": None}
    try:
        job = await jobs.enqueue(db, kind="train", user_id=subject.owner_id, params=params, cfg=queue,
                                 guild_id=subject.guild_id, channel_id=request.channel_id if request else None,
                                 subject_id=subject.id, idempotency_key=f"train-subject-{subject.id}")
    except QueueFull:
        await subjects.set_state(db, subject_id=subject.id, state="pending_review")
        raise
    subject = await subjects.set_state(db, subject_id=subject.id, state="queued")
    return Queued(subject=subject, job=job, position=await jobs.queue_position(db, job.id))


async def cancel_draft(db: aiosqlite.Connection, *, subject_id: int, user_id: int, data_dir: Path) -> int:
    subject = await _owned_draft(db, subject_id, user_id)
    return await drafts.discard(db, subject_id=subject.id, data_dir=data_dir)


async def expire_drafts(db: aiosqlite.Connection, *, data_dir: Path, max_age: float = DRAFT_TTL_SECONDS) -> int:
    """Delete drafts left unconfirmed past max_age (timeout means no); returns how many."""
    gone = 0
    for subject in await drafts.expired(db, max_age=max_age):
        await drafts.discard(db, subject_id=subject.id, data_dir=data_dir)
        gone += 1
    if gone:
        log.info("deleted %d unconfirmed drafts and their photos", gone)
    return gone


async def review(db: aiosqlite.Connection, *, subject_id: int, guild_id: int, moderator_id: int, approve: bool,
                 queue: QueueConfig) -> Queued:
    """A moderator's decision on a held subject of their own guild."""
    subject = await subjects.get(db, subject_id)
    if subject.guild_id != guild_id:
        raise SubjectError(f"Subject #{subject_id} doesn't belong to this server.")
    if subject.state != "pending_review":
        raise SubjectError(f"Subject #{subject_id} is {subject.state.replace('_', ' ')}, not waiting for review.")
    action = "subject.approved" if approve else "subject.rejected"
    await _audit(db, action, moderator_id, subject)
    if not approve:
        await subjects.set_state(db, subject_id=subject.id, state="rejected")
        return Queued(subject=await subjects.get(db, subject.id), job=None, position=None)
    return await enqueue_training(db, subject, queue=queue)


async def revoke(db: aiosqlite.Connection, *, subject_id: int, guild_id: int, moderator_id: int, reason: str,
                 data_dir: Path) -> subjects.Subject:
    """Revoke the subject's consent, delete its adapters and checkpoints; generation is refused from now on."""
    subject = await subjects.get(db, subject_id)
    if subject.guild_id != guild_id:
        raise SubjectError(f"Subject #{subject_id} doesn't belong to this server.")
    await consent.revoke(db, subject_id=subject.id, by=moderator_id, reason=reason or "revoked by a moderator")
    await subjects.set_adapter(db, subject_id=subject.id, artifact_id=None)
    subject = await subjects.set_state(db, subject_id=subject.id, state="revoked")
    for art in await artifacts.for_subject(db, subject.id):
        if art.kind in ("adapter", "adapter_kohya", "checkpoint"):
            await artifacts.delete(db, artifact_id=art.id, data_dir=data_dir)
    for job in await jobs.list_jobs(db, user_id=subject.owner_id, limit=200):
        if job.subject_id == subject.id and job.state in jobs.ACTIVE:
            await jobs.cancel(db, job_id=job.id)
    await _audit(db, "subject.revoked", moderator_id, subject, {"reason": reason})
    return subject


async def choose_adapter(db: aiosqlite.Connection, *, subject_id: int, user_id: int, artifact_id: int,
                         data_dir: Path) -> tuple[subjects.Subject, str]:
    """Use the final adapter or an earlier checkpoint's; returns the subject and what was chosen.

    A checkpoint folder holds a loadable adapter in `adapter/` (trainer/train.py); falling back records
    that folder as an artifact of kind "adapter" (meta from_checkpoint), so generation and /export
    load it like any final adapter.
    """
    subject = await subjects.get(db, subject_id)
    if subject.owner_id != user_id:
        raise SubjectError("Only the subject's owner can choose its version.")
    if subject.state in ("revoked", "rejected"):
        raise SubjectError(f"{subject.name!r} was {subject.state} and can't be used.")
    art = await artifacts.get(db, artifact_id)
    if art is None or art.subject_id != subject.id or art.kind not in ("adapter", "checkpoint"):
        raise SubjectError("That version is no longer kept (older checkpoints are deleted). Keep another one.")
    label = f"the checkpoint at step {art.meta.get('step', '?')}" if art.kind == "checkpoint" else "the final version"
    if art.kind == "checkpoint":
        art = await _checkpoint_adapter(db, subject, art, data_dir)
    subject = await subjects.set_adapter(db, subject_id=subject.id, artifact_id=art.id)
    if subject.state in ("queued", "training"):
        subject = await subjects.set_state(db, subject_id=subject.id, state="ready")
    return subject, label


async def _checkpoint_adapter(db: aiosqlite.Connection, subject: subjects.Subject, checkpoint: artifacts.Artifact,
                              data_dir: Path) -> artifacts.Artifact:
    adapters = await artifacts.for_subject(db, subject.id, kind="adapter")
    known = next((a for a in adapters if a.meta.get("from_checkpoint") == checkpoint.id), None)
    if known is not None:
        return known
    inner = f"{checkpoint.path.rstrip('/')}/adapter"
    if not files.resolve(data_dir, inner).is_dir():
        raise SubjectError("That checkpoint holds no usable adapter any more. Keep the final version instead.")
    final = next((a for a in reversed(adapters) if a.job_id == checkpoint.job_id), None)
    meta = {**(final.meta if final else {}), "steps": checkpoint.meta.get("step"), "from_checkpoint": checkpoint.id}
    return await artifacts.record(db, kind="adapter", path=inner, data_dir=data_dir, job_id=checkpoint.job_id,
                                  subject_id=subject.id, user_id=subject.owner_id, meta=meta)


async def discard_trained(db: aiosqlite.Connection, *, subject_id: int, user_id: int,
                          data_dir: Path) -> subjects.Subject:
    """The owner throws the training away: adapters and checkpoints deleted, the subject unusable."""
    subject = await subjects.get(db, subject_id)
    if subject.owner_id != user_id:
        raise SubjectError("Only the subject's owner can discard it.")
    await subjects.set_adapter(db, subject_id=subject.id, artifact_id=None)
    for art in await artifacts.for_subject(db, subject.id):
        if art.kind in ("adapter", "adapter_kohya", "checkpoint"):
            await artifacts.delete(db, artifact_id=art.id, data_dir=data_dir)
    await _audit(db, "subject.discarded", user_id, subject)
    return await subjects.set_state(db, subject_id=subject.id, state="failed")


async def tell_owner(db: aiosqlite.Connection, subject: subjects.Subject, text: str) -> None:
    """A notice to the owner in the channel of their /train, delivered through the outbox (exactly once)."""
    request = await drafts.request_for(db, subject.id)
    await outbox.post(db, kind="notice", payload={"text": text}, user_id=subject.owner_id,
                      guild_id=subject.guild_id, channel_id=request.channel_id if request else None)


async def _audit(db, action: str, actor_id: int, subject: subjects.Subject, detail: dict | None = None) -> None:
    from storage.db import transaction

    async with transaction(db):
        await audit.append(db, action=action, actor_id=actor_id, guild_id=subject.guild_id,
                           target_user_id=subject.owner_id, subject_id=subject.id, detail=detail or {})
