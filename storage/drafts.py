"""Draft subjects: cleaned photos staged before consent, with what the /train asked for.

A draft trains only after consent. One that is cancelled, or left unconfirmed past its time,
is deleted with its photos, on disk too (a photo blob shared with another subject stays).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from storage import files
from storage.db import fetch_all, fetch_one, now, transaction
from storage.subjects import Subject

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainRequest:
    subject_id: int
    preset: str | None
    channel_id: int | None
    created_at: float


async def save_request(db: aiosqlite.Connection, *, subject_id: int, preset: str | None,
                       channel_id: int | None) -> TrainRequest:
    query = """
        INSERT INTO train_requests (subject_id, preset, channel_id, created_at) VALUES (?, ?, ?, ?)
        ON CONFLICT (subject_id) DO UPDATE SET preset = excluded.preset, channel_id = excluded.channel_id
        RETURNING *
    """
    async with transaction(db):
        row = await fetch_one(db, query, (subject_id, preset, channel_id, now()))
    return TrainRequest(**dict(row))


async def request_for(db: aiosqlite.Connection, subject_id: int) -> TrainRequest | None:
    row = await fetch_one(db, "SELECT * FROM train_requests WHERE subject_id = ?", (subject_id,))
    return TrainRequest(**dict(row)) if row else None


async def pending(db: aiosqlite.Connection) -> list[Subject]:
    """Every draft subject, oldest first (their consent buttons are re-registered at start-up)."""
    rows = await fetch_all(db, "SELECT * FROM subjects WHERE state = 'draft' ORDER BY id")
    return [Subject(**dict(r)) for r in rows]


async def expired(db: aiosqlite.Connection, *, max_age: float, at: float | None = None) -> list[Subject]:
    t = now() if at is None else at
    rows = await fetch_all(db, "SELECT * FROM subjects WHERE state = 'draft' AND created_at < ? ORDER BY id",
                           (t - max_age,))
    return [Subject(**dict(r)) for r in rows]


async def discard(db: aiosqlite.Connection, *, subject_id: int, data_dir: Path) -> int:
    """Delete a draft subject and its photos; returns how many photos went (0 if it was no draft)."""
    async with transaction(db):
        row = await fetch_one(db, "SELECT state FROM subjects WHERE id = ?", (subject_id,))
        if row is None or row["state"] != "draft":
            return 0
        photo_rows = await fetch_all(db, "SELECT path FROM photos WHERE subject_id = ?", (subject_id,))
        await db.execute("DELETE FROM subjects WHERE id = ?", (subject_id,))  # photos and request cascade
    still_used = {r["path"] for r in await fetch_all(db, "SELECT path FROM photos")}
    for rel in {r["path"] for r in photo_rows} - still_used:
        try:
            files.remove(data_dir, rel)
        except OSError:
            log.exception("could not delete a discarded draft's photo")
    files.remove(data_dir, f"subjects/{subject_id}")
    return len(photo_rows)
