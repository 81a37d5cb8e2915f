"""The outbox: events the worker writes for the bot to deliver (progress, grids, results, failures).

The worker only appends; the bot reads pending events in order and marks each delivered once
Discord has accepted it. Payloads carry artifact ids, never photo paths or tokens.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiosqlite

from storage.db import fetch_all, fetch_one, now, transaction

KINDS = ("progress", "grid", "train_done", "images", "failed", "cancelled", "notice")


@dataclass(frozen=True)
class Event:
    id: int
    job_id: int | None
    user_id: int | None
    guild_id: int | None
    channel_id: int | None
    kind: str
    payload: dict[str, Any]
    created_at: float
    delivered_at: float | None
    attempts: int
    last_error: str | None

    @classmethod
    def from_row(cls, row: aiosqlite.Row) -> Event:
        d = dict(row)
        d["payload"] = json.loads(d["payload"])
        return cls(**d)


async def post(db: aiosqlite.Connection, *, kind: str, payload: dict[str, Any], job_id: int | None = None,
               user_id: int | None = None, guild_id: int | None = None, channel_id: int | None = None) -> int:
    if kind not in KINDS:
        raise ValueError(f"unknown outbox event kind {kind!r}")
    query = """
        INSERT INTO outbox (job_id, user_id, guild_id, channel_id, kind, payload, created_at)
        VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id
    """
    async with transaction(db):
        row = await fetch_one(db, query, (job_id, user_id, guild_id, channel_id, kind, json.dumps(payload), now()))
    return row["id"]


async def pending(db: aiosqlite.Connection, *, limit: int = 50) -> list[Event]:
    query = "SELECT * FROM outbox WHERE delivered_at IS NULL ORDER BY id LIMIT ?"
    return [Event.from_row(r) for r in await fetch_all(db, query, (limit,))]


async def mark_delivered(db: aiosqlite.Connection, event_id: int) -> None:
    async with transaction(db):
        await db.execute("UPDATE outbox SET delivered_at = ? WHERE id = ? AND delivered_at IS NULL", (now(), event_id))


async def mark_attempt_failed(db: aiosqlite.Connection, event_id: int, error: str) -> None:
    async with transaction(db):
        await db.execute("UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                         (error[:500], event_id))
