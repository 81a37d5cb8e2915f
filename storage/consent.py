"""Consent: the exact text a user agreed to, by version and SHA-256, append-only, revocable.

A subject's photos are kept and trained on only while an unrevoked consent covers it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import aiosqlite

from storage import audit, licenses
from storage.db import fetch_all, fetch_one, now, transaction
from storage.errors import ConsentError
from storage.licenses import ModelLicense

VERSION = "2026-12-v2"  # the text users confirm now; a changed text is always a new version
SCOPE = "train+generate"
# Every version ever shown, kept so an old consent's words can be rendered again. A consent recorded
# under an older version stays valid: it is the text that user saw and agreed to (stored whole, with
# its SHA-256); only new consents use the newest text.
_TEMPLATES = {
    "2026-11-v1": """\
Before dreambot trains on these photos, please confirm:
1. You took these photos or own the rights to them.
2. If a person can be recognised in them, that person is you, or they have agreed that a model of their likeness may be made and used here.
3. You allow dreambot to store the cleaned photos (location and camera data removed) and to train a personal model of "{name}" ({class_noun}) that only you can use to generate images in this server.
4. You can see, export or delete everything of yours at any time with /subjects, /export and /forget; moderators can revoke the subject.
Version {version}.""",
    # v2 (issue 16): names the base model and its license, whose use restrictions bind what is made with it.
    "2026-12-v2": """\
Before dreambot trains on these photos, please confirm:
1. You took these photos or own the rights to them.
2. If a person can be recognised in them, that person is you, or they have agreed that a model of their likeness may be made and used here.
3. You allow dreambot to store the cleaned photos (location and camera data removed) and to train a personal model of "{name}" ({class_noun}) that only you can use to generate images in this server.
4. You can see, export or delete everything of yours at any time with /subjects, /export and /forget; moderators can revoke the subject.
5. {license_sentence} Its use restrictions apply to every image made with this subject and to its LoRA file if you export it.
Version {version}.""",
}


@dataclass(frozen=True)
class Consent:
    id: int
    subject_id: int
    user_id: int
    guild_id: int | None
    text_version: str
    text_sha256: str
    text: str
    scope: str
    granted_at: float
    revoked_at: float | None
    revoked_by: int | None
    revoke_reason: str | None


def text_for(*, name: str, class_noun: str, model_license: ModelLicense | None = None,
             version: str = VERSION) -> str:
    """The exact words shown to the user for this subject. The /train reply and `confirm` must pass the
    same `model_license` (the bot's, resolved once at start-up), or the recorded text differs from the
    one shown; None says the operator has not stated one."""
    template = _TEMPLATES.get(version)
    if template is None:
        raise ValueError(f"unknown consent text version {version!r}")
    sentence = (model_license or licenses.unstated()).sentence()
    return template.format(name=name, class_noun=class_noun, version=version, license_sentence=sentence)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


async def grant(db: aiosqlite.Connection, *, subject_id: int, user_id: int, guild_id: int | None, text: str,
                version: str = VERSION, scope: str = SCOPE) -> Consent:
    """Record that `user_id` confirmed `text` (as shown) for the subject; durable before anything is trained."""
    t = now()
    query = """
        INSERT INTO consents (subject_id, user_id, guild_id, text_version, text_sha256, text, scope, granted_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING *
    """
    async with transaction(db):
        row = await fetch_one(db, query, (subject_id, user_id, guild_id, version, sha256_text(text), text, scope, t))
        await audit.append(db, action="consent.granted", actor_id=user_id, guild_id=guild_id,
                           target_user_id=user_id, subject_id=subject_id,
                           detail={"version": version, "text_sha256": sha256_text(text), "scope": scope})
    return Consent(**dict(row))


async def revoke(db: aiosqlite.Connection, *, subject_id: int, by: int, reason: str) -> list[Consent]:
    """Revoke every active consent of the subject; returns those revoked."""
    t = now()
    query = """
        UPDATE consents SET revoked_at = ?, revoked_by = ?, revoke_reason = ?
        WHERE subject_id = ? AND revoked_at IS NULL RETURNING *
    """
    async with transaction(db):
        rows = await fetch_all(db, query, (t, by, reason[:500], subject_id))
        for row in rows:
            await audit.append(db, action="consent.revoked", actor_id=by, guild_id=row["guild_id"],
                               target_user_id=row["user_id"], subject_id=subject_id, detail={"reason": reason[:500]})
    return [Consent(**dict(r)) for r in rows]


async def active(db: aiosqlite.Connection, subject_id: int) -> Consent | None:
    query = "SELECT * FROM consents WHERE subject_id = ? AND revoked_at IS NULL ORDER BY id DESC LIMIT 1"
    row = await fetch_one(db, query, (subject_id,))
    return Consent(**dict(row)) if row else None


async def require(db: aiosqlite.Connection, subject_id: int) -> Consent:
    """The active consent, or ConsentError: nothing is trained or generated without one."""
    found = await active(db, subject_id)
    if found is None:
        raise ConsentError("This subject has no active consent (it was never given or has been revoked), "
                           "so it cannot be used. Train it again with /train to give consent.")
    return found


async def for_guild(db: aiosqlite.Connection, guild_id: int, *, limit: int = 50) -> list[Consent]:
    query = "SELECT * FROM consents WHERE guild_id = ? ORDER BY id DESC LIMIT ?"
    return [Consent(**dict(r)) for r in await fetch_all(db, query, (guild_id, limit))]


async def for_user(db: aiosqlite.Connection, user_id: int) -> list[Consent]:
    query = "SELECT * FROM consents WHERE user_id = ? ORDER BY id"
    return [Consent(**dict(r)) for r in await fetch_all(db, query, (user_id,))]
