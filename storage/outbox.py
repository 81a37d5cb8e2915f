"""The outbox: events the worker writes for the bot to deliver (progress, grids, results, failures).

The worker only appends; the bot reads due events in order and marks each delivered once
Discord has accepted it. Payloads carry artifact ids, never photo paths or tokens.

Nothing is dropped. An event Discord refused is tried again after an exponential backoff with
full jitter ([storage.outbox]); after `park_after` failed tries it is *parked*: still pending,
tried at the slowest cadence, and listed for moderators (/mod outbox) and operators
(`dreambot outbox list`) until Discord takes it or someone retries it now (`retry`). A job's
events arrive in order: an event is not due while an earlier one of the same job waits.
"""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass
from typing import Any

import aiosqlite

from storage import logs
from storage.config import OutboxConfig
from storage.db import fetch_all, fetch_one, now, transaction
from storage.errors import DreambotError

KINDS = ("progress", "grid", "train_done", "images", "failed", "cancelled", "notice")

# An error's text may quote a request URL; an interaction's webhook token in it is a credential.
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
    next_attempt_at: float = 0.0  # not tried again before this time
    parked_at: float | None = None  # when it failed for the park_after-th time

    @property
    def parked(self) -> bool:
        return self.parked_at is not None

    @classmethod
    def from_row(cls, row: aiosqlite.Row) -> Event:
        d = {f.name: row[f.name] for f in dataclasses.fields(cls)}  # a later migration's columns aren't ours
        d["payload"] = json.loads(d["payload"])
        return cls(**d)


def retry_delay(attempts: int, cfg: OutboxConfig, rng: random.Random | None = None) -> float:
    """Seconds to wait after the `attempts`-th failure.

    Full jitter, uniform in [0, min(max, base * 2**(attempts-1))], so many refused events don't come
    back at once; a parked event waits between half and all of max_seconds.
    """
    rng = rng or random
    if attempts >= cfg.park_after:
        return rng.uniform(cfg.max_seconds / 2, cfg.max_seconds)
    return rng.uniform(0, min(cfg.max_seconds, cfg.base_seconds * 2 ** max(0, attempts - 1)))


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


async def pending(db: aiosqlite.Connection, *, limit: int = 50, at: float | None = None) -> list[Event]:
    """Undelivered events due at `at` (now), oldest first; `at=math.inf` gives every undelivered one.

    An event of a job waits while an earlier event of that job is not due, so the job's events
    stay in order; events of other jobs (and job-less ones) pass a waiting event.
    """
    query = """
        SELECT * FROM outbox AS o
        WHERE o.delivered_at IS NULL AND o.next_attempt_at <= ?
          AND NOT EXISTS (SELECT 1 FROM outbox AS e
                          WHERE e.job_id = o.job_id AND e.delivered_at IS NULL AND e.id < o.id
                            AND e.next_attempt_at > ?)
        ORDER BY o.id LIMIT ?
    """
    t = now() if at is None else at
    return [Event.from_row(r) for r in await fetch_all(db, query, (t, t, limit))]


async def get(db: aiosqlite.Connection, event_id: int) -> Event | None:
    row = await fetch_one(db, "SELECT * FROM outbox WHERE id = ?", (event_id,))
    return Event.from_row(row) if row else None


async def mark_delivered(db: aiosqlite.Connection, event_id: int) -> None:
    async with transaction(db):
        await db.execute("UPDATE outbox SET delivered_at = ? WHERE id = ? AND delivered_at IS NULL", (now(), event_id))


async def mark_attempt_failed(db: aiosqlite.Connection, event_id: int, error: str, *, cfg: OutboxConfig,
                              at: float | None = None, rng: random.Random | None = None) -> Event | None:
    """Count a refused try, set when to try next and park the event at `park_after` tries.

    Returns the event as it is now, or None when it is gone (its user was forgotten meanwhile).
    """
    t = now() if at is None else at
    async with transaction(db):
        row = await fetch_one(db, "SELECT attempts FROM outbox WHERE id = ?", (event_id,))
        if row is None:
            return None
        attempts = row["attempts"] + 1
        parked_at = t if attempts >= cfg.park_after else None
        query = """
            UPDATE outbox SET attempts = ?, last_error = ?, next_attempt_at = ?,
                              parked_at = coalesce(parked_at, ?)
            WHERE id = ? RETURNING *
        """
        row = await fetch_one(db, query, (attempts, redact(error)[:500], t + retry_delay(attempts, cfg, rng),
                                          parked_at, event_id))
    return Event.from_row(row)


async def list_parked(db: aiosqlite.Connection, *, guild_id: int | None = None,
                      limit: int = 50) -> list[Event]:
    """Parked events (of one guild, or of all), oldest first."""
    query = """
        SELECT * FROM outbox
        WHERE delivered_at IS NULL AND parked_at IS NOT NULL AND (? IS NULL OR guild_id = ?)
        ORDER BY id LIMIT ?
    """
    return [Event.from_row(r) for r in await fetch_all(db, query, (guild_id, guild_id, limit))]


async def retry(db: aiosqlite.Connection, *, event_id: int | None = None, at: float | None = None) -> int:
    """Make one undelivered event (or, with None, every waiting one) due now and un-park it.

    Returns how many events were changed. Attempts are kept: one that fails again is parked again.
    """
    t = now() if at is None else at
    async with transaction(db):
        if event_id is not None:
            rows = await fetch_all(db, "UPDATE outbox SET next_attempt_at = ?, parked_at = NULL "
                                       "WHERE id = ? AND delivered_at IS NULL RETURNING id", (t, event_id))
            if not rows:
                raise DreambotError(f"There is no undelivered outbox event #{event_id}: it was delivered, or "
                                    "never existed. `dreambot outbox list` shows the parked ones.")
        else:
            query = """
                UPDATE outbox SET next_attempt_at = ?, parked_at = NULL
                WHERE delivered_at IS NULL AND (parked_at IS NOT NULL OR next_attempt_at > ?) RETURNING id
            """
            rows = await fetch_all(db, query, (t, t))
    return len(rows)


def redact(error: str) -> str:
    """The error text without interaction tokens, so it can be stored and shown."""
    return logs.redact(error)
