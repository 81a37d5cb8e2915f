"""The worker's side: every write names the job's lease token, so a stopped, forgotten or taken-over
job refuses it; the endings (finished, stopped, released, failed, reaped) with their side effects."""


from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import aiosqlite

from storage import artifacts, consent, jobs, prompts, subjects
from storage.config import QueueConfig
from storage.db import IntegrityError, fetch_one, transaction
from storage.errors import (
    ConsentError,
    LeaseLost,
    StopRequested,
    SubjectError,
)
from storage.lifecycle.states import _move, _post, _set_adapter, _usage, remove_files
from storage.lifecycle.stopping import _delete_outputs
from storage.subjects import Subject

log = logging.getLogger(__name__)

async def _fence(db: aiosqlite.Connection, job_id: int, token: str, *, stopping: bool = False) -> jobs.Job:
    """The job, if this worker still holds it. LeaseLost when it is gone (forgotten) or taken over;
    StopRequested when it was cancelled, unless the worker is `stopping` (acknowledging that)."""
    row = await fetch_one(db, "SELECT * FROM jobs WHERE id = ?", (job_id,))
    if row is None or row["lease_token"] != token or row["state"] != "running":
        raise LeaseLost(job_id)
    if row["cancel_requested"] and not stopping:
        raise StopRequested(job_id)
    return jobs.Job.from_row(row)


async def stop_reason(db: aiosqlite.Connection, *, job_id: int, lease_token: str) -> str | None:
    """What the running work must do now: None (go on), 'cancel' or 'lost'. One read, no lock taken."""
    row = await fetch_one(db, "SELECT state, lease_token, cancel_requested FROM jobs WHERE id = ?", (job_id,))
    if row is None or row["lease_token"] != lease_token or row["state"] != "running":
        return "lost"
    return "cancel" if row["cancel_requested"] else None


async def job_exists(db: aiosqlite.Connection, job_id: int) -> bool:
    return await fetch_one(db, "SELECT 1 FROM jobs WHERE id = ?", (job_id,)) is not None


async def begin_training(db: aiosqlite.Connection, *, job_id: int, lease_token: str) -> Subject:
    """The worker starts a training: consent must be active; the subject becomes `training`."""
    async with transaction(db):
        job = await _fence(db, job_id, lease_token)
        subject = await subjects.get(db, job.subject_id) if job.subject_id is not None else None
        if subject is None:
            raise LeaseLost(job_id)
        await consent.require(db, subject.id)
        if subject.state != "training" and await _move(db, subject.id, "training") is None:
            raise ConsentError(f"{subject.name!r} is {subject.state}, so it cannot be trained.")
        return await subjects.get(db, subject.id)


async def record_artifact(db: aiosqlite.Connection, *, job_id: int, lease_token: str, kind: str, path: str,
                          data_dir: Path, meta: dict | None = None, cache_key: str | None = None,
                          replaces: Iterable[str] = ()) -> artifacts.Artifact:
    """Record a file the worker wrote for the job (and forget the recorded `replaces` paths); refused once
    the job is stopped, so the caller deletes the file.

    A sample grid's meta may say what the safety checker found: `nsfw` (a flagged tile is in it) and
    `withheld` (flagged tiles greyed out before it was saved), optionally `flagged` (tiles flagged); they
    are counted in usage in the same transaction."""
    async with transaction(db):
        job = await _fence(db, job_id, lease_token)
        gone = list(replaces)
        if gone:
            marks = ",".join("?" * len(gone))
            await db.execute(f"DELETE FROM artifacts WHERE job_id = ? AND path IN ({marks})", (job.id, *gone))
        shared = kind == "class_images"
        recorded = await artifacts.record(db, kind=kind, path=path, data_dir=data_dir,
                                          job_id=None if shared else job.id,
                                          subject_id=None if shared else job.subject_id,
                                          user_id=None if shared else job.user_id, cache_key=cache_key, meta=meta)
        if kind == "grid":
            flagged, withheld = _grid_flags(meta or {})
            if flagged or withheld:
                await _usage(db, job, gpu_seconds=0.0, images=0, flagged=flagged, withheld=withheld)
        return recorded


def _grid_flags(meta: dict) -> tuple[int, int]:
    """(flagged, withheld) tiles of a sample grid from its meta. Without an explicit `flagged`, the greyed-out
    tiles count, or one when the grid is marked but kept whole (its flagged tiles aren't counted)."""
    withheld = max(0, int(meta.get("withheld") or 0))
    flagged = meta.get("flagged")
    if flagged is None:
        flagged = withheld or int(bool(meta.get("nsfw")))
    return max(int(flagged), withheld), withheld


async def post_event(db: aiosqlite.Connection, *, job_id: int, lease_token: str, kind: str, payload: dict,
                     progress: tuple[int, int, str] | None = None) -> None:
    """An outbox event for the job (and its progress columns), only while the worker holds it unstopped."""
    async with transaction(db):
        job = await _fence(db, job_id, lease_token)
        if progress is not None:
            step, total, message = progress
            await jobs.set_progress(db, job_id=job.id, lease_token=lease_token, step=step, total=total,
                                    message=message)
        if kind:
            await _post(db, job, kind, payload)


async def finish_training(db: aiosqlite.Connection, *, job_id: int, lease_token: str, adapter_path: str,
                          kohya_path: str, meta: dict, result: dict, data_dir: Path,
                          gpu_seconds: float) -> tuple[Subject, jobs.Job]:
    """The adapter is recorded and put in use, the subject is trained, the job succeeds, the owner is told,
    usage is counted: one transaction, fenced. A subject revoked meanwhile refuses (StopRequested)."""
    async with transaction(db):
        job = await _fence(db, job_id, lease_token)
        common = {"job_id": job.id, "subject_id": job.subject_id, "user_id": job.user_id, "data_dir": data_dir,
                  "meta": meta}
        adapter = await artifacts.record(db, kind="adapter", path=adapter_path, **common)
        kohya = await artifacts.record(db, kind="adapter_kohya", path=kohya_path, **common)
        await _set_adapter(db, job.subject_id, adapter.id)
        subject = await _move(db, job.subject_id, "trained")
        if subject is None:
            raise StopRequested(job_id)
        checkpoints = await artifacts.for_job(db, job.id, "checkpoint")
        grids = await artifacts.for_job(db, job.id, "grid")
        result = {**result, "subject_id": subject.id, "adapter_artifact_id": adapter.id,
                  "kohya_artifact_id": kohya.id, "grid_artifact_id": grids[-1].id if grids else None,
                  "checkpoints": [{"step": a.meta.get("step"), "artifact_id": a.id} for a in checkpoints]}
        done = await jobs.complete(db, job_id=job.id, lease_token=lease_token, result=result)
        await _post(db, job, "train_done", {k: result[k] for k in (
            "subject_id", "adapter_artifact_id", "kohya_artifact_id", "grid_artifact_id", "checkpoints")}
            | {"job_id": job.id})
        await _usage(db, job, gpu_seconds=gpu_seconds, images=0)
    return subject, done


async def finish_generation(db: aiosqlite.Connection, *, job_id: int, lease_token: str, image_paths: Sequence[str],
                            grid_path: str | None, seeds: Sequence[int], prompt: str, data_dir: Path,
                            gpu_seconds: float, flagged: Sequence[bool] = (), withheld: int = 0) -> jobs.Job:
    """The images are recorded, the job succeeds and they are queued for delivery: one fenced transaction.
    A subject revoked or a job cancelled meanwhile refuses (StopRequested), so nothing is delivered.

    `flagged[i]` says the safety checker flagged `image_paths[i]` (its artifact gets meta `nsfw`, and so does
    the grid when any image in it is flagged; the bot decides per artifact where it may be shown);
    `withheld` counts flagged images the worker dropped before saving, and `grid_path` is None when nothing
    is left to show. The `images` event carries `withheld`; usage counts both."""
    flags = [bool(f) for f in flagged] or [False] * len(image_paths)
    if len(flags) != len(image_paths) or len(seeds) != len(image_paths) or withheld < 0:
        raise ValueError("finish_generation needs one seed and one flag per image, and withheld >= 0")
    async with transaction(db):
        job = await _fence(db, job_id, lease_token)
        for sid in job.params.get("subject_ids", []):
            prompts.require_usable(await subjects.get(db, sid))
        common = {"job_id": job.id, "user_id": job.user_id, "data_dir": data_dir}
        image_ids = [(await artifacts.record(db, kind="image", path=p, meta={"seed": s, "prompt": prompt}
                                             | ({"nsfw": True} if f else {}), **common)).id
                     for p, s, f in zip(image_paths, seeds, flags, strict=True)]
        grid = None
        if grid_path is not None:
            grid = await artifacts.record(db, kind="grid", path=grid_path, meta={"seeds": list(seeds)}
                                          | ({"nsfw": True} if any(flags) else {}), **common)
        payload = {"job_id": job.id, "prompt": prompt, "image_artifact_ids": image_ids,
                   "grid_artifact_id": grid.id if grid else None, "seeds": list(seeds), "withheld": withheld}
        done = await jobs.complete(db, job_id=job.id, lease_token=lease_token, result=payload)
        await _post(db, job, "images", payload)
        await _usage(db, job, gpu_seconds=gpu_seconds, images=len(image_ids) + withheld,
                     flagged=sum(flags) + withheld, withheld=withheld)
    return done


async def job_stopped(db: aiosqlite.Connection, *, job_id: int, lease_token: str, data_dir: Path,
                      gpu_seconds: float = 0.0) -> jobs.Job:
    """The worker stopped a job whose cancellation was asked for: it is cancelled, everything it made is
    deleted, the owner is told. LeaseLost when the job is gone (forgotten): the worker cleans up alone."""
    async with transaction(db):
        job = await _fence(db, job_id, lease_token, stopping=True)
        done = await jobs.acknowledge_cancel(db, job_id=job.id, lease_token=lease_token)
        if job.kind == "train" and job.subject_id is not None:
            await _move(db, job.subject_id, "cancelled")  # a revoked subject stays revoked
        paths = await _delete_outputs(db, job)
        await _post(db, job, "cancelled", {"job_id": job.id, "reason": job.error or "cancelled"})
        await _usage(db, job, gpu_seconds=gpu_seconds, images=0)
    await asyncio.to_thread(remove_files, data_dir, paths)
    return done


async def release_job(db: aiosqlite.Connection, *, job_id: int, lease_token: str) -> jobs.Job:
    """The worker is shutting down: the job goes back to the queue (it resumes from its checkpoint)."""
    async with transaction(db):
        job = await _fence(db, job_id, lease_token, stopping=True)
        if job.cancel_requested:
            raise StopRequested(job_id)
        done = await jobs.release(db, job_id=job.id, lease_token=lease_token)
        if job.kind == "train" and job.subject_id is not None:
            await _move(db, job.subject_id, "queued")
    return done


async def fail_job(db: aiosqlite.Connection, *, job_id: int, lease_token: str, error: str, retryable: bool,
                   queue: QueueConfig, gpu_seconds: float = 0.0) -> jobs.Job:
    """A failed attempt: retried after a backoff, or the job ends failed/dead, its subject failed, the owner told."""
    async with transaction(db):
        job = await _fence(db, job_id, lease_token, stopping=True)
        after = await jobs.fail(db, job_id=job.id, lease_token=lease_token, error=error, retryable=retryable, cfg=queue)
        if after.state in ("failed", "dead"):
            await _ended_badly(db, after, error)
        elif job.kind == "train" and job.subject_id is not None:
            await _move(db, job.subject_id, "queued")
        await _usage(db, job, gpu_seconds=gpu_seconds, images=0)
    return after


async def _ended_badly(db: aiosqlite.Connection, job: jobs.Job, error: str) -> None:
    if job.kind == "train" and job.subject_id is not None:
        await _move(db, job.subject_id, "failed")
    await _post(db, job, "failed", {"job_id": job.id, "error": error})


async def reap(db: aiosqlite.Connection, *, data_dir: Path, at: float | None = None) -> list[jobs.Job]:
    """Jobs whose worker went silent: back to the queue, or ended (dead: the subject fails and the owner is
    told; cancelled: its outputs are deleted)."""
    async with transaction(db):
        reaped = await jobs.reap_expired(db, at=at)
        paths: list[str] = []
        for job in reaped:
            if job.state == "dead":
                await _ended_badly(db, job, job.error or "the worker stopped responding")
            elif job.state == "cancelled":
                if job.kind == "train" and job.subject_id is not None:
                    await _move(db, job.subject_id, "cancelled")
                paths += await _delete_outputs(db, job)
                await _post(db, job, "cancelled", {"job_id": job.id, "reason": job.error or "cancelled"})
            elif job.kind == "train" and job.subject_id is not None:
                await _move(db, job.subject_id, "queued")
    await asyncio.to_thread(remove_files, data_dir, paths)
    return reaped


async def retry_job(db: aiosqlite.Connection, *, job_id: int) -> jobs.Job:
    """The operator queues an ended job again (its subject too, when consent still stands)."""
    async with transaction(db):
        job = await jobs.retry(db, job_id=job_id)
        if job.kind == "train" and job.subject_id is not None:
            await consent.require(db, job.subject_id)
            if not await subjects.photos(db, job.subject_id):
                raise SubjectError("Its photos were deleted after the training failed (retention): "
                                   "the owner has to run /train again.")
            try:
                await _move(db, job.subject_id, "queued")
            except IntegrityError:
                raise SubjectError("Its owner has a newer subject of the same name; that one is trained instead."
                                   ) from None
        return job
