"""Usage accounting: GPU seconds, images, and images the safety checker flagged, per user, subject and guild."""

from __future__ import annotations

from dataclasses import dataclass

import aiosqlite

from storage.db import fetch_all, fetch_one, now, transaction


@dataclass(frozen=True)
class UsageTotal:
    key: int | None          # the user, subject or guild id the row sums over
    jobs: int
    gpu_seconds: float
    images: int
    flagged: int = 0         # images or grid tiles the safety checker flagged
    withheld: int = 0        # of those, the ones never shown (dropped, greyed out, or held back at delivery)


async def record(db: aiosqlite.Connection, *, user_id: int, kind: str, gpu_seconds: float = 0.0, images: int = 0,
                 guild_id: int | None = None, subject_id: int | None = None, job_id: int | None = None,
                 flagged: int = 0, withheld: int = 0, event_id: int | None = None) -> None:
    """One row of usage. With `event_id`, a second row for the same event is ignored (a retried delivery)."""
    query = """
        INSERT INTO usage (at, user_id, guild_id, subject_id, job_id, kind, gpu_seconds, images, flagged, withheld,
                           event_id)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT DO NOTHING
    """
    async with transaction(db):
        await db.execute(query, (now(), user_id, guild_id, subject_id, job_id, kind, gpu_seconds, images, flagged,
                                 withheld, event_id))


async def record_withheld(db: aiosqlite.Connection, *, event_id: int, job_id: int | None, count: int) -> None:
    """The bot held back `count` flagged images of the job while delivering outbox event `event_id`; counted
    once per event, for the job's user and subject (nothing when the job is gone, e.g. its user was forgotten)."""
    if count <= 0 or job_id is None:
        return
    async with transaction(db):
        job = await fetch_one(db, "SELECT user_id, guild_id, subject_id, kind FROM jobs WHERE id = ?", (job_id,))
        if job is None:
            return
        await record(db, user_id=job["user_id"], kind=job["kind"], guild_id=job["guild_id"],
                     subject_id=job["subject_id"], job_id=job_id, withheld=count, event_id=event_id)


async def totals(db: aiosqlite.Connection, *, by: str, guild_id: int | None = None,
                 user_id: int | None = None) -> list[UsageTotal]:
    """Sums grouped by 'user_id', 'subject_id' or 'guild_id', optionally within one guild or for one user."""
    if by not in ("user_id", "subject_id", "guild_id"):
        raise ValueError(f"cannot group usage by {by!r}")
    query = f"""
        SELECT {by} AS key, count(DISTINCT job_id) AS jobs, coalesce(sum(gpu_seconds), 0) AS gpu_seconds,
               coalesce(sum(images), 0) AS images, coalesce(sum(flagged), 0) AS flagged,
               coalesce(sum(withheld), 0) AS withheld
        FROM usage
        WHERE (? IS NULL OR guild_id = ?) AND (? IS NULL OR user_id = ?)
        GROUP BY {by} ORDER BY gpu_seconds DESC
    """
    rows = await fetch_all(db, query, (guild_id, guild_id, user_id, user_id))
    return [UsageTotal(**dict(r)) for r in rows]
