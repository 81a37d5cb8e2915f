"""The subject states, their one transition table, and the helpers every transition shares.

`_move` is the only code that writes a subject's state. Each transition runs inside its caller's
transaction; files are deleted after the commit (`remove_files`).
"""


from __future__ import annotations

import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from storage import audit, files, jobs, outbox, usage
from storage.db import fetch_all, fetch_one, now
from storage.errors import BlobStoreError
from storage.subjects import Subject

log = logging.getLogger(__name__)


SUBJECT_TRANSITIONS: dict[str, tuple[str, ...]] = {
    "draft": ("consented",),  # or deleted outright: cancelled, expired, forgotten
    "consented": ("queued", "revoked"),
    "queued": ("training", "cancelled", "failed", "revoked"),
    "training": ("queued", "trained", "failed", "cancelled", "revoked"),
    "trained": ("queued", "cancelled", "revoked"),  # queued: trained again; cancelled: discarded
    "failed": ("queued", "revoked"),
    "cancelled": ("queued", "revoked"),
    "revoked": (),
}
# Every state may also become "forgotten" (/forget): the user's rows are deleted, so no row holds it.
DRAFT_TTL_SECONDS = 15 * 60  # an unconfirmed draft and its photos are deleted after this
DAY = 24 * 3600.0
GONE = "This request has expired or was cancelled, and its photos were deleted. Run /train again."
VARY_GUIDANCE = 5.0  # "Vary": the same seed under looser guidance gives variations on one composition
MB = 1 << 20


@dataclass(frozen=True)
class Limits:
    """What a guild and the operator allow one user; each is checked in the transaction it limits."""
    cooldown_seconds: float = 0.0
    user_quota_bytes: int | None = None  # stored photo bytes per user
    presets: Collection[str] | None = None  # known preset names; None: any
    review_default: bool = False  # [bot] review_required, for guilds that never set their own


NO_LIMITS = Limits()


@dataclass(frozen=True)
class Queued:
    subject: Subject
    job: jobs.Job | None  # None while held for review
    position: int | None


@dataclass(frozen=True)
class ImageRequest:
    user_id: int
    guild_id: int | None
    channel_id: int | None
    prompt: str  # as the user wrote it
    subject_name: str | None = None
    count: int = 1
    seed: int | None = None
    guidance: float | None = None
    steps: int | None = None  # sampler steps; None: the worker's setting


@dataclass(frozen=True)
class QueuedImages:
    job: jobs.Job
    prompt: str  # as the worker receives it
    position: int | None


@dataclass(frozen=True)
class ForgetReport:
    subjects: int
    photos: int
    consents: int
    jobs: int
    artifacts: int
    files_removed: int

    def summary(self) -> str:
        return (f"{self.subjects} subjects, {self.photos} photos, {self.artifacts} trained files and images, "
                f"{self.jobs} jobs and {self.consents} consent records")


# --- the one place a subject's state is written ----------------------------------------------------

async def _move(db: aiosqlite.Connection, subject_id: int, to: str) -> Subject | None:
    """Move the subject to `to` if the table allows it from its current state; None if it does not.

    Runs inside the caller's transaction.
    """
    row = await fetch_one(db, "SELECT state FROM subjects WHERE id = ?", (subject_id,))
    if row is None or to not in SUBJECT_TRANSITIONS[row["state"]]:
        return None
    row = await fetch_one(db, "UPDATE subjects SET state = ?, updated_at = ? WHERE id = ? RETURNING *",
                          (to, now(), subject_id))
    return Subject(**dict(row))


async def _set_adapter(db: aiosqlite.Connection, subject_id: int, artifact_id: int | None) -> Subject:
    row = await fetch_one(db, "UPDATE subjects SET adapter_artifact_id = ?, updated_at = ? WHERE id = ? RETURNING *",
                          (artifact_id, now(), subject_id))
    return Subject(**dict(row))


def remove_files(data_dir: Path, paths: Iterable[str]) -> int:
    """Delete recorded files and folders after a commit, here and in the object store; returns how many existed.
    Never raises. Blocking (the store is a network service): a coroutine runs it with asyncio.to_thread."""
    removed = 0
    for rel in sorted(set(paths)):
        try:
            removed += files.remove(Path(data_dir), rel)
        except (OSError, ValueError, BlobStoreError):
            log.exception("could not delete a file; the sweep will retry")
    return removed


async def _unused_blobs(db: aiosqlite.Connection, paths: Iterable[str]) -> set[str]:
    """The photo blobs among `paths` no photo row uses any more (blobs are shared by content)."""
    wanted = sorted(set(paths))
    if not wanted:
        return set()
    marks = ",".join("?" * len(wanted))
    still = {r["path"] for r in await fetch_all(db, f"SELECT DISTINCT path FROM photos WHERE path IN ({marks})",
                                                wanted)}
    return set(wanted) - still


# --- helpers ----------------------------------------------------------------------------------------

async def _post(db: aiosqlite.Connection, job: jobs.Job, kind: str, payload: dict) -> None:
    await outbox.post(db, kind=kind, payload=payload, job_id=job.id, user_id=job.user_id, guild_id=job.guild_id,
                      channel_id=job.channel_id)


async def _usage(db: aiosqlite.Connection, job: jobs.Job, *, gpu_seconds: float, images: int, flagged: int = 0,
                 withheld: int = 0) -> None:
    """Usage of a job's attempt, written in the fenced transaction that ends it (never for a forgotten user)."""
    await usage.record(db, user_id=job.user_id, kind=job.kind, gpu_seconds=gpu_seconds, images=images,
                       guild_id=job.guild_id, subject_id=job.subject_id, job_id=job.id, flagged=flagged,
                       withheld=withheld)


async def _audit(db: aiosqlite.Connection, action: str, actor_id: int | None, subject: Subject,
                 detail: dict | None = None) -> None:
    """An audit entry about the subject, inside the caller's transaction (it commits with the change)."""
    await audit.append(db, action=action, actor_id=actor_id, guild_id=subject.guild_id,
                       target_user_id=subject.owner_id, subject_id=subject.id, detail=detail or {})
