"""A subject from its photos to its training: the draft, consent, review, queueing, and the
command line's `dreambot train` under the same rules."""


from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import aiosqlite

from storage import consent, files, guilds, jobs, likeness, prompts, subjects
from storage.config import LikenessConfig, QueueConfig
from storage.db import fetch_all, fetch_one, now, transaction
from storage.errors import (
    ConsentError,
    PromptRefused,
    SubjectError,
)
from storage.subjects import RARE_TOKENS, Subject

if TYPE_CHECKING:
    from storage.licenses import ModelLicense
    from storage.photos import CleanPhoto

from storage.lifecycle.images import record_refusal
from storage.lifecycle.limits import (
    _check_storage,
    _check_subject_quota,
    _take_cooldown,
    check_preset,
    ensure_not_banned,
)
from storage.lifecycle.states import (
    DRAFT_TTL_SECONDS,
    GONE,
    NO_LIMITS,
    Limits,
    Queued,
    _audit,
    _move,
    _unused_blobs,
    remove_files,
)
from storage.lifecycle.stopping import _revoke
from storage.lifecycle.worker import retry_job

log = logging.getLogger(__name__)

# --- intake: a draft holding cleaned photos ---------------------------------------------------------

async def create_draft(db: aiosqlite.Connection, *, owner_id: int, guild_id: int | None, channel_id: int | None,
                       name: str, class_noun: str, preset: str | None, photos: Sequence[CleanPhoto], data_dir: Path,
                       limits: Limits = NO_LIMITS, likeness_rules: LikenessConfig | None = None) -> Subject:
    """A draft subject with its photos. Ban, blocklist, preset, cooldown, subject quota and storage cap are
    checked in the same transaction that writes it, so simultaneous requests can't all pass. A person's
    name and class noun reach every prompt made with it: the likeness rules refuse them first (recorded)."""
    name, class_noun = subjects.normalize_name(name), subjects.normalize_class_noun(class_noun)
    preset = check_preset(preset, limits.presets)
    if guild_id is not None:
        prompts.check_subject_words(name=name, class_noun=class_noun, terms=await guilds.blocklist(db, guild_id))
    refusal = likeness.check_subject(name, class_noun, likeness_rules or LikenessConfig())
    if refusal is not None:
        await record_refusal(db, refusal, user_id=owner_id, guild_id=guild_id, subject_id=None, step="train")
        raise PromptRefused(refusal.message)
    # Blobs first (content-addressed, idempotent), so the transaction only writes rows.
    stored = [(p, *await asyncio.to_thread(files.put_blob, Path(data_dir), p.data, p.suffix)) for p in photos]
    try:
        async with transaction(db):
            await ensure_not_banned(db, user_id=owner_id, guild_id=guild_id)
            if limits.cooldown_seconds:
                await _take_cooldown(db, user_id=owner_id, action="train", seconds=limits.cooldown_seconds)
            policy = None
            if guild_id is not None:
                policy = await guilds.policy(db, guild_id, default_review=limits.review_default)
            await _check_subject_quota(db, owner_id=owner_id, guild_id=guild_id, policy=policy)
            await _check_storage(db, owner_id=owner_id, adding=sum(len(p.data) for p in photos),
                                 quota=limits.user_quota_bytes)
            subject = await _insert_subject(db, owner_id=owner_id, guild_id=guild_id, name=name, class_noun=class_noun)
            for photo, sha, rel in stored:
                await subjects.add_photo(db, subject_id=subject.id, sha256=sha, path=rel, width=photo.width,
                                         height=photo.height, findings=list(photo.findings),
                                         size_bytes=len(photo.data))
            await db.execute("INSERT INTO train_requests (subject_id, preset, channel_id, created_at) "
                             "VALUES (?, ?, ?, ?)", (subject.id, preset, channel_id, now()))
    except BaseException:
        remove_files(data_dir, await _unused_blobs(db, [rel for _, _, rel in stored]))
        raise
    return subject


async def _insert_subject(db: aiosqlite.Connection, *, owner_id: int, guild_id: int | None, name: str,
                          class_noun: str) -> Subject:
    live = ",".join("?" * len(subjects.LIVE))
    clash = await fetch_one(db, f"SELECT state FROM subjects WHERE owner_id = ? AND guild_id IS ? AND name = ? "
                                f"AND state IN ({live})", (owner_id, guild_id, name, *subjects.LIVE))
    if clash is not None:
        raise SubjectError(f"You already have a subject called {name!r} ({clash['state']}). "
                           "Pick another name, or delete the old one with /forget.")
    used = {r[0] for r in await fetch_all(db, f"SELECT token FROM subjects WHERE owner_id = ? AND state IN ({live})",
                                          (owner_id, *subjects.LIVE))}
    token = next((tok for tok in RARE_TOKENS if tok not in used), None)
    if token is None:
        raise SubjectError(f"You have {len(used)} subjects, the most one person may keep. "
                           "Delete one with /forget before training another.")
    t = now()
    row = await fetch_one(db, "INSERT INTO subjects (owner_id, guild_id, name, token, class_noun, created_at, "
                              "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING *",
                          (owner_id, guild_id, name, token, class_noun, t, t))
    return Subject(**dict(row))


async def _owned_draft(db: aiosqlite.Connection, subject_id: int, user_id: int) -> Subject:
    try:
        subject = await subjects.get(db, subject_id)
    except SubjectError:
        raise SubjectError(GONE) from None
    if subject.owner_id != user_id:
        raise SubjectError("Only the person who ran /train can answer this.")
    if subject.state != "draft":
        raise SubjectError(f"{subject.name!r} was already confirmed; /subjects shows where it is.")
    return subject


async def discard_draft(db: aiosqlite.Connection, *, subject_id: int, data_dir: Path,
                        user_id: int | None = None) -> int:
    """Delete a draft and its photos (Cancel, or no answer in time); returns how many photos went."""
    async with transaction(db):
        if user_id is not None:
            await _owned_draft(db, subject_id, user_id)
        row = await fetch_one(db, "SELECT state FROM subjects WHERE id = ?", (subject_id,))
        if row is None or row["state"] != "draft":
            return 0
        photo_rows = await fetch_all(db, "SELECT path FROM photos WHERE subject_id = ?", (subject_id,))
        await db.execute("DELETE FROM subjects WHERE id = ?", (subject_id,))  # photos and request cascade
        gone = await _unused_blobs(db, [r["path"] for r in photo_rows])
    await asyncio.to_thread(remove_files, data_dir, gone | {f"subjects/{subject_id}"})
    return len(photo_rows)


async def expire_drafts(db: aiosqlite.Connection, *, data_dir: Path, max_age: float = DRAFT_TTL_SECONDS,
                        at: float | None = None) -> int:
    """Delete drafts left unconfirmed past max_age (timeout means no); returns how many. One bad row is
    logged and skipped, never stops the others."""
    t = now() if at is None else at
    rows = await fetch_all(db, "SELECT id FROM subjects WHERE state = 'draft' AND created_at < ? ORDER BY id",
                           (t - max_age,))
    gone = 0
    for row in rows:
        try:
            await discard_draft(db, subject_id=row["id"], data_dir=data_dir)
            gone += 1
        except Exception:
            log.exception("could not expire draft subject %d; going on", row["id"])
    if gone:
        log.info("deleted %d unconfirmed drafts and their photos", gone)
    return gone


# --- consent, review, queueing ----------------------------------------------------------------------

async def confirm(db: aiosqlite.Connection, *, subject_id: int, user_id: int, queue: QueueConfig,
                  review_required: bool, actor_note: str | None = None,
                  model_license: ModelLicense | None = None,
                  likeness_rules: LikenessConfig | None = None) -> Queued:
    """Record consent to the exact text shown (with the base model's license the caller showed), then queue
    training (or hold it for review: always for a minor's likeness, whatever the guild's policy). All or
    nothing: a ban or a full queue leaves the draft as it was."""
    async with transaction(db):
        subject = await _owned_draft(db, subject_id, user_id)
        await ensure_not_banned(db, user_id=user_id, guild_id=subject.guild_id)
        text = consent.text_for(name=subject.name, class_noun=subject.class_noun, model_license=model_license)
        await consent.grant(db, subject_id=subject.id, user_id=user_id, guild_id=subject.guild_id, text=text)
        if actor_note:
            await _audit(db, "consent.local", user_id, subject, {"note": actor_note})
        moved = await _move(db, subject.id, "consented")
        held_because = likeness.review_reason(subject.class_noun, likeness_rules or LikenessConfig())
        if held_because:
            await _audit(db, "subject.held", None, subject, {"reason": held_because})
        if review_required or held_because:
            return Queued(subject=moved, job=None, position=None)
        return await _enqueue_training(db, moved, queue=queue)


async def _enqueue_training(db: aiosqlite.Connection, subject: Subject, *, queue: QueueConfig,
                            params: dict | None = None, idempotency_key: str | None = None) -> Queued:
    await consent.require(db, subject.id)
    request = await fetch_one(db, "SELECT * FROM train_requests WHERE subject_id = ?", (subject.id,))
    if params is None:
        params = {"preset": request["preset"] if request else None}
    job = await jobs.enqueue(db, kind="train", user_id=subject.owner_id, params=params, cfg=queue,
                             guild_id=subject.guild_id, channel_id=request["channel_id"] if request else None,
                             subject_id=subject.id, idempotency_key=idempotency_key)
    if job.state in jobs.ACTIVE:
        moved = await _move(db, subject.id, "queued")
        subject = moved or subject
    return Queued(subject=subject, job=job, position=await jobs.queue_position(db, job.id))


async def queue_training(db: aiosqlite.Connection, *, subject_id: int, queue: QueueConfig, params: dict | None = None,
                         idempotency_key: str | None = None, likeness_rules: LikenessConfig | None = None) -> Queued:
    """Queue (another) training of a consented subject: after review, a failure, a cancel, or to train again.
    A minor's likeness still held for review is not queued: only a moderator's approval (`review`) does."""
    async with transaction(db):
        subject = await subjects.get(db, subject_id)
        if subject.state == "draft":
            raise ConsentError(f"{subject.name!r} has no consent yet: confirm it first.")
        if subject.state == "consented" and likeness.review_reason(subject.class_noun,
                                                                     likeness_rules or LikenessConfig()):
            raise SubjectError(f"{subject.name!r} is waiting for a moderator's review, which a minor's likeness "
                               "always needs; /mod review approves it.")
        return await _enqueue_training(db, subject, queue=queue, params=params, idempotency_key=idempotency_key)


async def review(db: aiosqlite.Connection, *, subject_id: int, guild_id: int, moderator_id: int, approve: bool,
                 queue: QueueConfig, data_dir: Path) -> Queued:
    """A moderator's decision on a held subject of their own guild. Rejection revokes it (photos deleted)."""
    async with transaction(db):
        subject = await _guild_subject(db, subject_id, guild_id)
        if subject.state != "consented":
            raise SubjectError(f"Subject #{subject_id} is {subject.state}, not waiting for review.")
        if not approve:
            paths = await _revoke(db, subject, by=moderator_id, reason="rejected by a moderator",
                                  action="subject.rejected")
        else:
            await _audit(db, "subject.approved", moderator_id, subject)
            return await _enqueue_training(db, subject, queue=queue)
    await asyncio.to_thread(remove_files, data_dir, paths)
    return Queued(subject=await subjects.get(db, subject.id), job=None, position=None)


async def _guild_subject(db: aiosqlite.Connection, subject_id: int, guild_id: int) -> Subject:
    subject = await subjects.get(db, subject_id)
    if subject.guild_id != guild_id:
        raise SubjectError(f"Subject #{subject_id} doesn't belong to this server.")
    return subject


# --- the command line's training: the same rules, the local operator as the one who consents -------

async def local_training(db: aiosqlite.Connection, *, owner_id: int, name: str, class_noun: str,
                         photos: Sequence[CleanPhoto], params: dict, idempotency_key: str, consent_given: bool,
                         queue: QueueConfig, data_dir: Path,
                         model_license: ModelLicense | None = None, reviewed_by: str | None = None,
                         likeness_rules: LikenessConfig | None = None) -> tuple[Subject, jobs.Job]:
    """`dreambot train`: find or make the subject, add new photos, record the operator's consent, queue.
    A minor's likeness is trained only when the operator names who reviewed it (`reviewed_by`, recorded)."""
    rules = likeness_rules or LikenessConfig()
    found = await subjects.find(db, owner_id=owner_id, name=name, guild_id=None)
    if found is not None and found.state not in subjects.LIVE:
        found = None  # an ended subject of that name: train a new one
    if (found is None or found.state == "draft") and not consent_given:
        # Refused before a photo is kept: consent comes first.
        raise ConsentError("Training needs the consent above: pass --consent, or answer yes when asked.")
    minor = likeness.review_reason(subjects.normalize_class_noun(class_noun), rules)
    reviewer = " ".join((reviewed_by or "").split())
    if minor and not reviewer:
        # Refused before a photo is kept, as a server holds it for a moderator.
        raise SubjectError(f"Not trained: {minor}. Check the photos and that a parent or guardian consented, then "
                           "run again with --reviewed-by 'YOUR NAME' to record who reviewed it.")
    if found is not None and found.class_noun != subjects.normalize_class_noun(class_noun):
        raise SubjectError(f"subject {found.name!r} is a {found.class_noun}, not a {class_noun}: use another --name")
    if found is None:
        found = await create_draft(db, owner_id=owner_id, guild_id=None, channel_id=None, name=name,
                                   class_noun=class_noun, preset=params.get("preset"), photos=photos,
                                   data_dir=data_dir, likeness_rules=rules)
    else:
        have = {p.sha256 for p in await subjects.photos(db, found.id)}
        for photo in photos:
            sha, rel = await asyncio.to_thread(files.put_blob, Path(data_dir), photo.data, photo.suffix)
            if sha not in have:
                await subjects.add_photo(db, subject_id=found.id, sha256=sha, path=rel, width=photo.width,
                                         height=photo.height, findings=list(photo.findings), size_bytes=len(photo.data))
                have.add(sha)
    if found.state == "draft":
        await confirm(db, subject_id=found.id, user_id=owner_id, queue=queue, review_required=True,
                      actor_note="the local operator, at the command line", model_license=model_license,
                      likeness_rules=rules)
        found = await subjects.get(db, found.id)
    async with transaction(db):
        if minor:
            await _audit(db, "subject.approved", owner_id, found, {"reviewed_by": reviewer, "reason": minor,
                                                                    "note": "at the command line"})
        queued = await _enqueue_training(db, found, queue=queue, params=params, idempotency_key=idempotency_key)
        job = queued.job
    if job.state in ("failed", "dead", "cancelled"):
        job = await retry_job(db, job_id=job.id)
    return await subjects.get(db, found.id), job
