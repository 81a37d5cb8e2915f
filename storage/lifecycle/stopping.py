"""Stopping work: /cancel, a moderator's revoke, a ban and /forget stop running jobs and delete what
they made, in one transaction each."""


from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import aiosqlite

from storage import audit, consent, guilds, jobs, subjects
from storage.db import fetch_all, fetch_one, now, transaction
from storage.errors import (
    JobNotFound,
    SubjectError,
    WrongJobState,
)
from storage.lifecycle.states import (
    ForgetReport,
    _audit,
    _move,
    _post,
    _set_adapter,
    _unused_blobs,
    remove_files,
)
from storage.subjects import Subject

log = logging.getLogger(__name__)

async def _stop_job(db: aiosqlite.Connection, job: jobs.Job, *, reason: str) -> list[str]:
    """Cancel a queued job at once (its outputs deleted: returns their paths), or ask a running one to stop
    (the worker stops within seconds and `job_stopped` deletes them). Inside the caller's transaction."""
    if job.state == "queued":
        await db.execute("UPDATE jobs SET state = 'cancelled', error = ?, finished_at = ?, updated_at = ? "
                         "WHERE id = ?", (reason, now(), now(), job.id))
        if job.kind == "train" and job.subject_id is not None:
            await _move(db, job.subject_id, "cancelled")
        paths = await _delete_outputs(db, job)
        await _post(db, job, "cancelled", {"job_id": job.id, "reason": reason})
        return paths
    if job.state == "running":
        await db.execute("UPDATE jobs SET cancel_requested = 1, error = ?, updated_at = ? WHERE id = ?",
                         (reason, now(), job.id))
        # Whatever it has made but not delivered yet is never delivered.
        await db.execute("DELETE FROM outbox WHERE job_id = ? AND delivered_at IS NULL", (job.id,))
    return []


async def _delete_outputs(db: aiosqlite.Connection, job: jobs.Job) -> list[str]:
    """Delete the rows of everything the job made (not the shared class images); returns the paths to remove."""
    rows = await fetch_all(db, "DELETE FROM artifacts WHERE job_id = ? AND kind != 'class_images' RETURNING id, path",
                           (job.id,))
    ids = [r["id"] for r in rows]
    if ids:
        marks = ",".join("?" * len(ids))
        await db.execute(f"UPDATE subjects SET adapter_artifact_id = NULL WHERE adapter_artifact_id IN ({marks})", ids)
    # What it made is never delivered; the notices of its end (cancelled, failed) still are.
    await db.execute("DELETE FROM outbox WHERE job_id = ? AND delivered_at IS NULL "
                     "AND kind IN ('progress', 'grid', 'train_done', 'images')", (job.id,))
    return [r["path"] for r in rows] + job_paths(job)


def job_paths(job: jobs.Job) -> list[str]:
    """Where a job's files live, recorded or not: its folder, and a training's exported adapter files."""
    paths = [f"jobs/{job.id}"]
    if job.kind == "train" and job.subject_id is not None:
        subject_dir = f"subjects/{job.subject_id}"
        paths += [f"{subject_dir}/job-{job.id}-adapter", f"{subject_dir}/job-{job.id}-kohya.safetensors"]
    return paths


async def abandoned_paths(db: aiosqlite.Connection, job: jobs.Job) -> list[str]:
    """What a worker deletes of a job whose row is gone (its user was forgotten while it ran): the job's
    files, and its subject's folder when the subject is gone too."""
    paths = job_paths(job)
    if job.subject_id is not None and await fetch_one(db, "SELECT 1 FROM subjects WHERE id = ?",
                                                      (job.subject_id,)) is None:
        paths.append(f"subjects/{job.subject_id}")
    return paths


async def cancel_job(db: aiosqlite.Connection, *, job_id: int, data_dir: Path, user_id: int | None = None,
                     actor_id: int | None = None) -> jobs.Job:
    """Cancel a queued job now, or stop a running one within seconds. With `user_id`, only that user's job."""
    async with transaction(db):
        job = await jobs.get(db, job_id)
        if user_id is not None and job.user_id != user_id:
            raise JobNotFound(job_id)
        if job.state not in jobs.ACTIVE:
            raise WrongJobState(job_id, job.state, "cancelled")
        paths = await _stop_job(db, job, reason="cancelled by its owner" if user_id is not None else "cancelled")
        await audit.append(db, action="job.cancelled", actor_id=actor_id if actor_id is not None else user_id,
                           guild_id=job.guild_id, target_user_id=job.user_id, subject_id=job.subject_id, job_id=job.id)
        job = await jobs.get(db, job_id)
    await asyncio.to_thread(remove_files, data_dir, paths)
    return job


async def _subject_jobs(db: aiosqlite.Connection, subject_id: int, *, active: bool) -> list[jobs.Job]:
    """Jobs that use the subject (queued and running ones only, when `active`): its trainings, and
    generations naming it."""
    query = """
        SELECT * FROM jobs WHERE (:active = 0 OR state IN ('queued', 'running'))
          AND (subject_id = :s OR EXISTS (SELECT 1 FROM json_each(jobs.params, '$.subject_ids')
                                          WHERE CAST(value AS INTEGER) = :s))
    """
    return [jobs.Job.from_row(r) for r in await fetch_all(db, query, {"s": subject_id, "active": active})]


async def _revoke(db: aiosqlite.Connection, subject: Subject, *, by: int | None, reason: str,
                  action: str) -> list[str]:
    """Inside a transaction: consent revoked, subject revoked, its work stopped, its photos, adapters,
    checkpoints and grids deleted. Returns the paths to remove after the commit."""
    await consent.revoke(db, subject_id=subject.id, by=by if by is not None else 0, reason=reason)
    moved = await _move(db, subject.id, "revoked")
    if moved is None:
        raise SubjectError(f"Subject #{subject.id} is {subject.state} and can't be revoked.")
    paths: list[str] = []
    for job in await _subject_jobs(db, subject.id, active=True):
        paths += await _stop_job(db, job, reason=reason)
    await _set_adapter(db, subject.id, None)
    rows = await fetch_all(db, "DELETE FROM artifacts WHERE subject_id = ? RETURNING path", (subject.id,))
    paths += [r["path"] for r in rows]
    photo_rows = await fetch_all(db, "DELETE FROM photos WHERE subject_id = ? RETURNING path", (subject.id,))
    paths += await _unused_blobs(db, [r["path"] for r in photo_rows])
    paths.append(f"subjects/{subject.id}")
    for job in await _subject_jobs(db, subject.id, active=False):
        # Every job that used it, ended ones too: images and grids made with it, what is not delivered
        # yet, and whatever a crash left in its folder.
        paths += await _delete_outputs(db, job)
    await _audit(db, action, by, subject, {"reason": reason})
    return paths


async def revoke(db: aiosqlite.Connection, *, subject_id: int, guild_id: int | None, moderator_id: int, reason: str,
                 data_dir: Path) -> Subject:
    """A moderator revokes a subject of their guild: its work stops, its photos and everything trained go."""
    async with transaction(db):
        subject = await subjects.get(db, subject_id)
        if guild_id is not None and subject.guild_id != guild_id:
            raise SubjectError(f"Subject #{subject_id} doesn't belong to this server.")
        if subject.state == "draft":
            raise SubjectError(f"Subject #{subject_id} has no consent yet; its draft expires by itself.")
        paths = await _revoke(db, subject, by=moderator_id, reason=reason or "revoked by a moderator",
                              action="subject.revoked")
    await asyncio.to_thread(remove_files, data_dir, paths)
    return await subjects.get(db, subject_id)


async def ban(db: aiosqlite.Connection, *, guild_id: int, user_id: int, by: int, reason: str,
              data_dir: Path) -> int:
    """Bar a user in a guild; their queued jobs there are cancelled and running ones stopped. Returns how many."""
    async with transaction(db):
        await guilds.ban(db, guild_id=guild_id, user_id=user_id, by=by, reason=reason)
        active = await fetch_all(db, "SELECT * FROM jobs WHERE user_id = ? AND guild_id = ? "
                                     "AND state IN ('queued', 'running')", (user_id, guild_id))
        paths: list[str] = []
        for row in active:
            paths += await _stop_job(db, jobs.Job.from_row(row), reason="its owner was barred by a moderator")
    await asyncio.to_thread(remove_files, data_dir, paths)
    return len(active)


async def forget_user(db: aiosqlite.Connection, *, user_id: int, data_dir: Path,
                      actor_id: int | None = None) -> ForgetReport:
    """Delete everything of a user, in every guild; only the audit tombstone stays.

    The tombstone is written first, in the same transaction, because the schema's append-only
    triggers allow deleting a user's consents and audit entries only after it. A running job loses
    its row: its worker notices within seconds, stops, and deletes what it had made since.
    """
    subject_ids = "SELECT id FROM subjects WHERE owner_id = :u"
    async with transaction(db):
        subject_rows = await fetch_all(db, subject_ids, {"u": user_id})
        photo_rows = await fetch_all(db, f"SELECT path FROM photos WHERE subject_id IN ({subject_ids})", {"u": user_id})
        artifact_rows = await fetch_all(
            db, f"SELECT path FROM artifacts WHERE user_id = :u OR subject_id IN ({subject_ids})", {"u": user_id})
        job_rows = await fetch_all(db, "SELECT * FROM jobs WHERE user_id = :u", {"u": user_id})
        consent_rows = await fetch_all(db, "SELECT id FROM consents WHERE user_id = :u", {"u": user_id})
        report = ForgetReport(subjects=len(subject_rows), photos=len(photo_rows), consents=len(consent_rows),
                              jobs=len(job_rows), artifacts=len(artifact_rows), files_removed=0)
        await audit.append(db, action="user.forgotten", actor_id=actor_id, target_user_id=user_id,
                           detail={k: v for k, v in vars(report).items() if k != "files_removed"})
        for query in (
            f"DELETE FROM artifacts WHERE user_id = :u OR subject_id IN ({subject_ids})",
            "DELETE FROM outbox WHERE user_id = :u OR job_id IN (SELECT id FROM jobs WHERE user_id = :u)",
            "DELETE FROM jobs WHERE user_id = :u",
            "DELETE FROM consents WHERE user_id = :u",
            "DELETE FROM subjects WHERE owner_id = :u",  # photos, requests go with them (ON DELETE CASCADE)
            "DELETE FROM usage WHERE user_id = :u",
            "DELETE FROM rate_limits WHERE user_id = :u",
            "DELETE FROM audit_log WHERE target_user_id = :u AND action != 'user.forgotten'",
        ):
            await db.execute(query, {"u": user_id})
        paths = await _unused_blobs(db, [r["path"] for r in photo_rows])
    paths |= {r["path"] for r in artifact_rows}
    for row in job_rows:
        paths |= set(job_paths(jobs.Job.from_row(row)))
    paths |= {f"subjects/{r['id']}" for r in subject_rows}
    removed = await asyncio.to_thread(remove_files, data_dir, paths)
    log.info("forgot a user: %s", report.summary())
    return ForgetReport(**{**vars(report), "files_removed": removed})
