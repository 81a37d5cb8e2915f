"""Limits, each checked inside the transaction of the write it limits: bans, cooldowns, subjects per
user, images per day, the photo storage cap, and known presets."""


from __future__ import annotations

import logging
from collections.abc import Collection

import aiosqlite

from storage import guilds, subjects
from storage.db import fetch_one, now
from storage.errors import (
    Banned,
    CooldownActive,
    QuotaReached,
    SubjectError,
)
from storage.lifecycle.states import DAY, MB

log = logging.getLogger(__name__)

async def ensure_not_banned(db: aiosqlite.Connection, *, user_id: int, guild_id: int | None) -> None:
    """Banned (a DreambotError) when a moderator barred the user in this guild; outside a guild (a DM,
    the command line), in any guild."""
    query = "SELECT reason FROM guild_bans WHERE user_id = ? AND (? IS NULL OR guild_id = ?) LIMIT 1"
    row = await fetch_one(db, query, (user_id, guild_id, guild_id))
    if row is not None:
        raise Banned(row["reason"])


async def cooldown_left(db: aiosqlite.Connection, *, user_id: int, action: str, seconds: float,
                        at: float | None = None) -> float:
    """Seconds until the user may `action` again (0: now). Read-only: a quick refusal before slow work."""
    row = await fetch_one(db, "SELECT last_at FROM rate_limits WHERE user_id = ? AND action = ?", (user_id, action))
    t = now() if at is None else at
    return 0.0 if row is None else max(0.0, row["last_at"] + seconds - t)


async def _take_cooldown(db: aiosqlite.Connection, *, user_id: int, action: str, seconds: float) -> None:
    left = await cooldown_left(db, user_id=user_id, action=action, seconds=seconds)
    if left > 0:
        raise CooldownActive(action, left)
    await db.execute("INSERT INTO rate_limits (user_id, action, last_at) VALUES (?, ?, ?) "
                     "ON CONFLICT (user_id, action) DO UPDATE SET last_at = excluded.last_at", (user_id, action, now()))


async def _check_subject_quota(db: aiosqlite.Connection, *, owner_id: int, guild_id: int | None,
                               policy: guilds.Policy | None) -> None:
    if policy is None or policy.max_subjects_per_user is None:
        return
    marks = ",".join("?" * len(subjects.LIVE))
    (have,) = await fetch_one(db, f"SELECT count(*) FROM subjects WHERE owner_id = ? AND guild_id IS ? "
                                  f"AND state IN ({marks})", (owner_id, guild_id, *subjects.LIVE))
    if have >= policy.max_subjects_per_user:
        raise QuotaReached(f"You have {have} subjects here and this server allows {policy.max_subjects_per_user}. "
                           "Delete yours with /forget, or ask a moderator.")


async def _check_storage(db: aiosqlite.Connection, *, owner_id: int, adding: int, quota: int | None) -> None:
    if quota is None:
        return
    query = "SELECT coalesce(sum(size_bytes), 0) FROM photos WHERE subject_id IN (SELECT id FROM subjects WHERE owner_id = ?)"
    (used,) = await fetch_one(db, query, (owner_id,))
    if used + adding > quota:
        raise QuotaReached(f"Your photos would take {(used + adding) / MB:.1f} MB, over the {quota / MB:.0f} MB each "
                           "person may store. Delete subjects you no longer need with /forget, or send fewer "
                           "or smaller photos.")


async def _check_images_per_day(db: aiosqlite.Connection, *, user_id: int, guild_id: int | None, count: int,
                                policy: guilds.Policy | None) -> None:
    if policy is None or policy.max_images_per_day is None:
        return
    used = await guilds.images_requested_since(db, user_id=user_id, guild_id=guild_id, since=now() - DAY)
    if used + count > policy.max_images_per_day:
        left = max(0, policy.max_images_per_day - used)
        raise QuotaReached(f"This server allows {policy.max_images_per_day} images a day per person and "
                           f"you have {left} left. Ask for fewer, or try again tomorrow.")


def check_preset(preset: str | None, presets: Collection[str] | None) -> str | None:
    """The preset name as stored, or SubjectError naming the known ones (before any consent is asked)."""
    chosen = (preset or "").strip().lower() or None
    if chosen is not None and presets is not None and chosen not in presets:
        raise SubjectError(f"There is no preset called {preset!r}. Choose one of: {', '.join(sorted(presets))}.")
    return chosen
