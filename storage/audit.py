"""The append-only audit log: who did what, when. Triggers in the schema forbid edits."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiosqlite

from storage.db import fetch_all, now


@dataclass(frozen=True)
class Entry:
    id: int
    at: float
    actor_id: int | None
    action: str
    guild_id: int | None
    target_user_id: int | None
    subject_id: int | None
    job_id: int | None
    detail: dict[str, Any]

    @classmethod
    def from_row(cls, row: aiosqlite.Row) -> Entry:
        d = dict(row)
        d["detail"] = json.loads(d["detail"])
        return cls(**d)


async def append(db: aiosqlite.Connection, *, action: str, actor_id: int | None = None, guild_id: int | None = None,
                 target_user_id: int | None = None, subject_id: int | None = None, job_id: int | None = None,
                 detail: dict[str, Any] | None = None) -> None:
    """Add an entry. Call inside the caller's transaction when the entry must commit with its change."""
    query = """
        INSERT INTO audit_log (at, actor_id, action, guild_id, target_user_id, subject_id, job_id, detail)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?)
    """
    await db.execute(query, (now(), actor_id, action, guild_id, target_user_id, subject_id, job_id,
                             json.dumps(detail or {}, sort_keys=True)))


async def recent(db: aiosqlite.Connection, *, guild_id: int | None = None, target_user_id: int | None = None,
                 limit: int = 25) -> list[Entry]:
    query = """
        SELECT * FROM audit_log
        WHERE (? IS NULL OR guild_id = ?) AND (? IS NULL OR target_user_id = ?)
        ORDER BY id DESC LIMIT ?
    """
    rows = await fetch_all(db, query, (guild_id, guild_id, target_user_id, target_user_id, limit))
    return [Entry.from_row(r) for r in rows]
