"""Per-guild moderation: the policy (review, quotas, flagged images), bans and the prompt blocklist.

Every change is written to the audit log in the same transaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import aiosqlite

from storage import audit
from storage.db import fetch_all, fetch_one, now, transaction
from storage.errors import DreambotError

_UNSET = object()
NSFW_MODES = ("block", "spoiler-in-age-restricted")  # what happens to images the safety checker flagged


@dataclass(frozen=True)
class Policy:
    guild_id: int
    review_required: bool
    max_subjects_per_user: int | None
    max_images_per_day: int | None
    moderator_role_id: int | None = None  # its members moderate too; None: only Manage Server
    nsfw: str = "block"  # flagged images: "block" (never posted) or "spoiler-in-age-restricted"


@dataclass(frozen=True)
class Ban:
    guild_id: int
    user_id: int
    banned_by: int
    reason: str
    created_at: float


async def policy(db: aiosqlite.Connection, guild_id: int, *, default_review: bool) -> Policy:
    """The guild's policy; settings it never changed come from the config defaults."""
    row = await fetch_one(db, "SELECT * FROM guild_policy WHERE guild_id = ?", (guild_id,))
    review = default_review if row is None or row["review_required"] is None else bool(row["review_required"])
    return Policy(guild_id=guild_id, review_required=review,
                  max_subjects_per_user=row["max_subjects_per_user"] if row else None,
                  max_images_per_day=row["max_images_per_day"] if row else None,
                  moderator_role_id=row["moderator_role_id"] if row else None,
                  nsfw=row["nsfw"] if row else "block")


async def nsfw_mode(db: aiosqlite.Connection, guild_id: int | None) -> str:
    """What the guild does with flagged images; "block" outside a guild and where it was never set."""
    if guild_id is None:
        return "block"
    row = await fetch_one(db, "SELECT nsfw FROM guild_policy WHERE guild_id = ?", (guild_id,))
    return row["nsfw"] if row else "block"


async def set_policy(db: aiosqlite.Connection, *, guild_id: int, by: int, review_required=_UNSET,
                     max_subjects_per_user=_UNSET, max_images_per_day=_UNSET, moderator_role_id=_UNSET,
                     nsfw=_UNSET) -> None:
    """Change the given settings; others stay as they are.

    None on a quota removes the limit; None as the moderator role leaves moderation to Manage Server.
    `nsfw` is one of NSFW_MODES.
    """
    changes = {k: v for k, v in (("review_required", review_required),
                                 ("max_subjects_per_user", max_subjects_per_user),
                                 ("max_images_per_day", max_images_per_day),
                                 ("moderator_role_id", moderator_role_id),
                                 ("nsfw", nsfw)) if v is not _UNSET}
    for key, value in changes.items():
        if key in ("max_subjects_per_user", "max_images_per_day") and value is not None and value < 0:
            raise DreambotError(f"{key.replace('_', ' ')} can't be negative: give 0 or more, or leave it empty.")
    if "nsfw" in changes and changes["nsfw"] not in NSFW_MODES:
        raise DreambotError(f"nsfw can't be {changes['nsfw']!r}: give \"block\" (flagged images are never posted) "
                            "or \"spoiler-in-age-restricted\" (posted as spoilers in age-restricted channels only).")
    t = now()
    async with transaction(db):
        await db.execute("INSERT INTO guild_policy (guild_id, updated_by, updated_at) VALUES (?, ?, ?) "
                         "ON CONFLICT (guild_id) DO NOTHING", (guild_id, by, t))
        for key, value in changes.items():  # keys come from the fixed tuple above, never from a user
            stored = int(value) if isinstance(value, bool) else value
            await db.execute(f"UPDATE guild_policy SET {key} = ?, updated_by = ?, updated_at = ? WHERE guild_id = ?",
                             (stored, by, t, guild_id))
        await audit.append(db, action="guild.policy_changed", actor_id=by, guild_id=guild_id, detail=changes)


async def ban(db: aiosqlite.Connection, *, guild_id: int, user_id: int, by: int, reason: str = "") -> None:
    query = """
        INSERT INTO guild_bans (guild_id, user_id, banned_by, reason, created_at) VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (guild_id, user_id) DO UPDATE SET reason = excluded.reason, banned_by = excluded.banned_by
    """
    async with transaction(db):
        await db.execute(query, (guild_id, user_id, by, reason[:500], now()))
        await audit.append(db, action="user.banned", actor_id=by, guild_id=guild_id, target_user_id=user_id,
                           detail={"reason": reason[:500]})


async def unban(db: aiosqlite.Connection, *, guild_id: int, user_id: int, by: int) -> bool:
    """Lift a ban; False when the user was not banned."""
    async with transaction(db):
        row = await fetch_one(db, "DELETE FROM guild_bans WHERE guild_id = ? AND user_id = ? RETURNING user_id",
                              (guild_id, user_id))
        if row is not None:
            await audit.append(db, action="user.unbanned", actor_id=by, guild_id=guild_id, target_user_id=user_id)
    return row is not None


async def get_ban(db: aiosqlite.Connection, *, guild_id: int, user_id: int) -> Ban | None:
    row = await fetch_one(db, "SELECT * FROM guild_bans WHERE guild_id = ? AND user_id = ?", (guild_id, user_id))
    return Ban(**dict(row)) if row else None


async def bans(db: aiosqlite.Connection, guild_id: int) -> list[Ban]:
    rows = await fetch_all(db, "SELECT * FROM guild_bans WHERE guild_id = ? ORDER BY created_at", (guild_id,))
    return [Ban(**dict(r)) for r in rows]


def normalize_term(term: str) -> str:
    cleaned = " ".join(term.split()).lower()
    if not cleaned or len(cleaned) > 64:
        raise DreambotError("A blocked term must be 1-64 characters: a word or a short phrase.")
    return cleaned


async def block_term(db: aiosqlite.Connection, *, guild_id: int, term: str, by: int) -> str:
    term = normalize_term(term)
    query = ("INSERT INTO prompt_blocklist (guild_id, term, added_by, created_at) VALUES (?, ?, ?, ?) "
             "ON CONFLICT (guild_id, term) DO NOTHING")
    async with transaction(db):
        await db.execute(query, (guild_id, term, by, now()))
        await audit.append(db, action="blocklist.added", actor_id=by, guild_id=guild_id, detail={"term": term})
    return term


async def unblock_term(db: aiosqlite.Connection, *, guild_id: int, term: str, by: int) -> bool:
    term = normalize_term(term)
    async with transaction(db):
        row = await fetch_one(db, "DELETE FROM prompt_blocklist WHERE guild_id = ? AND term = ? RETURNING term",
                              (guild_id, term))
        if row is not None:
            await audit.append(db, action="blocklist.removed", actor_id=by, guild_id=guild_id, detail={"term": term})
    return row is not None


async def blocklist(db: aiosqlite.Connection, guild_id: int) -> list[str]:
    rows = await fetch_all(db, "SELECT term FROM prompt_blocklist WHERE guild_id = ? ORDER BY term", (guild_id,))
    return [r["term"] for r in rows]


async def images_requested_since(db: aiosqlite.Connection, *, user_id: int, guild_id: int | None,
                                 since: float) -> int:
    """Images the user asked for (generate jobs not cancelled) in the guild since a time."""
    query = """
        SELECT coalesce(sum(coalesce(CAST(json_extract(params, '$.n') AS INTEGER), 1)), 0) FROM jobs
        WHERE kind = 'generate' AND user_id = ? AND guild_id IS ? AND created_at >= ? AND state != 'cancelled'
    """
    (count,) = await fetch_one(db, query, (user_id, guild_id, since))
    return int(count)


def word_pattern(term: str) -> re.Pattern[str]:
    """A term matched as whole words, case-insensitive ("cat" blocks "a cat", not "concatenate")."""
    return re.compile(r"(?<!\w)" + r"\s+".join(map(re.escape, term.split())) + r"(?!\w)", re.IGNORECASE)
