"""Usage accounting: GPU seconds and images, per user, subject and guild."""

from __future__ import annotations

from dataclasses import dataclass

import aiosqlite

from storage.db import fetch_all, now, transaction


@dataclass(frozen=True)
class UsageTotal:
    key: int | None          # the user, subject or guild id the row sums over
    jobs: int
    gpu_seconds: float
    images: int


async def record(db: aiosqlite.Connection, *, user_id: int, kind: str, gpu_seconds: float = 0.0, images: int = 0,
                 guild_id: int | None = None, subject_id: int | None = None, job_id: int | None = None) -> None:
    query = """
        INSERT INTO usage (at, user_id, guild_id, subject_id, job_id, kind, gpu_seconds, images)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?)
    """
    async with transaction(db):
        await db.execute(query, (now(), user_id, guild_id, subject_id, job_id, kind, gpu_seconds, images))


async def totals(db: aiosqlite.Connection, *, by: str, guild_id: int | None = None,
                 user_id: int | None = None) -> list[UsageTotal]:
    """Sums grouped by 'user_id', 'subject_id' or 'guild_id', optionally within one guild or for one user."""
    if by not in ("user_id", "subject_id", "guild_id"):
        raise ValueError(f"cannot group usage by {by!r}")
    query = f"""
        SELECT {by} AS key, count(DISTINCT job_id) AS jobs, coalesce(sum(gpu_seconds), 0) AS gpu_seconds,
               coalesce(sum(images), 0) AS images
        FROM usage
        WHERE (? IS NULL OR guild_id = ?) AND (? IS NULL OR user_id = ?)
        GROUP BY {by} ORDER BY gpu_seconds DESC
    """
    rows = await fetch_all(db, query, (guild_id, guild_id, user_id, user_id))
    return [UsageTotal(**dict(r)) for r in rows]
