"""Subjects (what a user trains: "rex", a dog) and their cleaned photos."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import aiosqlite

from storage.db import IntegrityError, fetch_all, fetch_one, now, transaction
from storage.errors import SubjectError

# The states and their transitions are storage.lifecycle's; this module only reads subjects.
STATES = ("draft", "consented", "queued", "training", "trained", "failed", "cancelled", "revoked")
LIVE = ("draft", "consented", "queued", "training", "trained")  # hold their name and token

# Rare identifier tokens: short strings the base model has almost no prior for, each a single
# CLIP token, so "a photo of sks dog" binds the subject to the token (DreamBooth, section 4.2).
# After the community's "sks" and "ohwx", they are whole-word tokens from the last merges of
# CLIP's BPE (the rarest), vowel-free, with the few that are well-known words taken out; a string
# that splits into several tokens ("zwx" -> "z" + "wx") would bind the subject to common letters.
# A user's subjects never share one; the list is long enough for the photo quota.
RARE_TOKENS = (
    "sks", "ohwx", "nlwx", "rcn", "httr", "shld", "pgs", "rps", "gsp", "tvc",
    "pbc", "rmb", "mgt", "mds", "pln", "mss", "nrg", "bpd", "kts", "mwf",
    "ccd", "cwgc", "rsc", "ddc", "fbs", "scd", "bdg", "hns", "nwsl", "stg",
)
NAME_PATTERN = re.compile(r"^[\w][\w \-']{0,31}$")


@dataclass(frozen=True)
class Subject:
    id: int
    owner_id: int
    guild_id: int | None
    name: str
    token: str
    class_noun: str
    state: str
    adapter_artifact_id: int | None
    created_at: float
    updated_at: float

    @property
    def instance_prompt(self) -> str:
        return f"a photo of {self.token} {self.class_noun}"

    @property
    def class_prompt(self) -> str:
        return f"a photo of a {self.class_noun}"


@dataclass(frozen=True)
class Photo:
    id: int
    subject_id: int
    position: int
    sha256: str
    path: str
    width: int
    height: int
    findings: list[str]
    created_at: float
    size_bytes: int = 0

    @classmethod
    def from_row(cls, row: aiosqlite.Row) -> Photo:
        d = dict(row)
        d["findings"] = json.loads(d["findings"])
        return cls(**d)


def normalize_name(name: str) -> str:
    """A subject name as stored: trimmed, single-spaced, lower-case; SubjectError if unusable."""
    cleaned = " ".join(name.split()).lower()
    if not NAME_PATTERN.match(cleaned):
        raise SubjectError(f"{name!r} can't be a subject name: use 1-32 letters, digits, spaces, - or '.")
    return cleaned


def normalize_class_noun(noun: str) -> str:
    cleaned = " ".join(noun.split()).lower()
    if not re.fullmatch(r"[a-z][a-z \-]{0,31}", cleaned):
        raise SubjectError(f"{noun!r} can't be a class noun: use a plain word such as dog, cat, mug or person.")
    return cleaned


async def get(db: aiosqlite.Connection, subject_id: int) -> Subject:
    row = await fetch_one(db, "SELECT * FROM subjects WHERE id = ?", (subject_id,))
    if row is None:
        raise SubjectError(f"Subject #{subject_id} does not exist (it may have been deleted).")
    return Subject(**dict(row))


async def find(db: aiosqlite.Connection, *, owner_id: int, name: str, guild_id: int | None = None) -> Subject | None:
    """The owner's subject by name; with guild_id None, the newest of that name in any guild."""
    query = """
        SELECT * FROM subjects WHERE owner_id = ? AND name = ? AND (? IS NULL OR guild_id IS ?)
        ORDER BY id DESC LIMIT 1
    """
    row = await fetch_one(db, query, (owner_id, " ".join(name.split()).lower(), guild_id, guild_id))
    return Subject(**dict(row)) if row else None


async def list_for_owner(db: aiosqlite.Connection, owner_id: int, *, guild_id: int | None = None) -> list[Subject]:
    query = "SELECT * FROM subjects WHERE owner_id = ? AND (? IS NULL OR guild_id IS ?) ORDER BY name"
    return [Subject(**dict(r)) for r in await fetch_all(db, query, (owner_id, guild_id, guild_id))]


async def list_for_guild(db: aiosqlite.Connection, guild_id: int, *, state: str | None = None) -> list[Subject]:
    query = "SELECT * FROM subjects WHERE guild_id = ? AND (? IS NULL OR state = ?) ORDER BY id"
    return [Subject(**dict(r)) for r in await fetch_all(db, query, (guild_id, state, state))]


async def add_photo(db: aiosqlite.Connection, *, subject_id: int, sha256: str, path: str, width: int, height: int,
                    findings: list[str] | tuple[str, ...] = (), size_bytes: int = 0) -> Photo:
    """Attach a stored photo; the same photo twice in one subject is refused."""
    query = """
        INSERT INTO photos (subject_id, position, sha256, path, width, height, findings, created_at, size_bytes)
        VALUES (?, (SELECT coalesce(max(position), 0) + 1 FROM photos WHERE subject_id = ?), ?, ?, ?, ?, ?, ?, ?)
        RETURNING *
    """
    try:
        async with transaction(db):
            row = await fetch_one(db, query, (subject_id, subject_id, sha256, path, width, height,
                                              json.dumps(list(findings)), now(), size_bytes))
    except IntegrityError:
        raise SubjectError("That photo is already part of this subject: send a different one.") from None
    return Photo.from_row(row)


async def photos(db: aiosqlite.Connection, subject_id: int) -> list[Photo]:
    rows = await fetch_all(db, "SELECT * FROM photos WHERE subject_id = ? ORDER BY position", (subject_id,))
    return [Photo.from_row(r) for r in rows]


async def drafts(db: aiosqlite.Connection) -> list[Subject]:
    """Every draft subject, oldest first (their consent buttons are re-registered at start-up)."""
    rows = await fetch_all(db, "SELECT * FROM subjects WHERE state = 'draft' ORDER BY id")
    return [Subject(**dict(r)) for r in rows]
