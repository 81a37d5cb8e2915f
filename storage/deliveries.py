"""Where the bot shows a job: its channel status message and, for 15 minutes, the command's own reply.

The interaction token lets the bot edit the reply to the user's command; it is kept only until the
result is delivered or the token expires, then cleared.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiosqlite

from storage.db import fetch_one, now, transaction


@dataclass(frozen=True)
class Delivery:
    job_id: int
    channel_id: int | None
    status_message_id: int | None
    application_id: int | None
    interaction_token: str | None
    token_expires_at: float | None
    updated_at: float

    def token_valid(self, at: float, margin: float = 30.0) -> bool:
        """Whether the interaction token can still be used, with a margin for slow uploads."""
        return bool(self.interaction_token) and (self.token_expires_at or 0) - margin > at


async def get(db: aiosqlite.Connection, job_id: int) -> Delivery | None:
    row = await fetch_one(db, "SELECT * FROM deliveries WHERE job_id = ?", (job_id,))
    return Delivery(**dict(row)) if row else None


async def _upsert(db: aiosqlite.Connection, job_id: int, channel_id: int | None, **values) -> None:
    t = now()
    async with transaction(db):
        await db.execute("INSERT INTO deliveries (job_id, channel_id, updated_at) VALUES (?, ?, ?) "
                         "ON CONFLICT (job_id) DO NOTHING", (job_id, channel_id, t))
        for key, value in values.items():  # keys are this module's own, never a user's
            await db.execute(f"UPDATE deliveries SET {key} = ?, updated_at = ? WHERE job_id = ?", (value, t, job_id))


async def remember_interaction(db: aiosqlite.Connection, *, job_id: int, channel_id: int | None,
                               application_id: int, token: str, expires_at: float) -> None:
    await _upsert(db, job_id, channel_id, application_id=application_id, interaction_token=token,
                  token_expires_at=expires_at)


async def forget_interaction(db: aiosqlite.Connection, job_id: int) -> None:
    async with transaction(db):
        await db.execute("UPDATE deliveries SET interaction_token = NULL, updated_at = ? WHERE job_id = ?",
                         (now(), job_id))


async def set_status_message(db: aiosqlite.Connection, *, job_id: int, channel_id: int, message_id: int) -> None:
    await _upsert(db, job_id, channel_id, status_message_id=message_id)


async def forget_expired_tokens(db: aiosqlite.Connection, *, at: float | None = None) -> int:
    """Clear every interaction token past its expiry; returns how many."""
    t = now() if at is None else at
    async with transaction(db):
        cur = await db.execute("UPDATE deliveries SET interaction_token = NULL, updated_at = ? "
                               "WHERE interaction_token IS NOT NULL AND token_expires_at < ?", (t, t))
    return cur.rowcount
