"""The owner's choices after training: which version to keep, or discarding it."""


from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import aiosqlite

from storage import artifacts, files, outbox, subjects
from storage.db import fetch_all, fetch_one, transaction
from storage.errors import (
    SubjectError,
)
from storage.lifecycle.states import _audit, _move, _set_adapter, remove_files
from storage.subjects import Subject

log = logging.getLogger(__name__)

async def choose_adapter(db: aiosqlite.Connection, *, subject_id: int, user_id: int, artifact_id: int,
                         data_dir: Path) -> tuple[Subject, str]:
    """Use the final adapter or an earlier checkpoint's; returns the subject and what was chosen.

    A checkpoint folder holds a loadable adapter in `adapter/` (trainer/train.py); falling back records
    that folder as an artifact of kind "adapter" (meta from_checkpoint), so generation and /export
    load it like any final adapter.
    """
    async with transaction(db):
        subject = await subjects.get(db, subject_id)
        if subject.owner_id != user_id:
            raise SubjectError("Only the subject's owner can choose its version.")
        if subject.state != "trained":
            raise SubjectError(f"{subject.name!r} is {subject.state} and can't be used.")
        art = await artifacts.get(db, artifact_id)
        if art is None or art.subject_id != subject.id or art.kind not in ("adapter", "checkpoint"):
            raise SubjectError("That version is no longer kept (older checkpoints are deleted). Keep another one.")
        label = (f"the checkpoint at step {art.meta.get('step', '?')}" if art.kind == "checkpoint"
                 else "the final version")
        if art.kind == "checkpoint":
            art = await _checkpoint_adapter(db, subject, art, data_dir)
        subject = await _set_adapter(db, subject.id, art.id)
        await _audit(db, "subject.adapter_chosen", user_id, subject, {"artifact_id": art.id, "label": label})
    return subject, label


async def _checkpoint_adapter(db: aiosqlite.Connection, subject: Subject, checkpoint: artifacts.Artifact,
                              data_dir: Path) -> artifacts.Artifact:
    adapters = await artifacts.for_subject(db, subject.id, kind="adapter")
    known = next((a for a in adapters if a.meta.get("from_checkpoint") == checkpoint.id), None)
    if known is not None:
        return known
    inner = f"{checkpoint.path.rstrip('/')}/adapter"
    if not (await asyncio.to_thread(files.local, data_dir, inner)).is_dir():  # fetched here to be hashed
        raise SubjectError("That checkpoint holds no usable adapter any more. Keep the final version instead.")
    final = next((a for a in reversed(adapters) if a.job_id == checkpoint.job_id), None)
    meta = {**(final.meta if final else {}), "steps": checkpoint.meta.get("step"), "from_checkpoint": checkpoint.id}
    return await artifacts.record(db, kind="adapter", path=inner, data_dir=data_dir, job_id=checkpoint.job_id,
                                  subject_id=subject.id, user_id=subject.owner_id, meta=meta)


async def discard_trained(db: aiosqlite.Connection, *, subject_id: int, user_id: int, data_dir: Path) -> Subject:
    """The owner throws the training away: adapters and checkpoints deleted, the subject cancelled."""
    async with transaction(db):
        subject = await subjects.get(db, subject_id)
        if subject.owner_id != user_id:
            raise SubjectError("Only the subject's owner can discard it.")
        if await _move(db, subject.id, "cancelled") is None:
            raise SubjectError(f"{subject.name!r} is {subject.state}; only a trained subject can be discarded.")
        await _set_adapter(db, subject.id, None)
        rows = await fetch_all(db, "DELETE FROM artifacts WHERE subject_id = ? AND kind IN "
                                   "('adapter', 'adapter_kohya', 'checkpoint') RETURNING path", (subject.id,))
        await _audit(db, "subject.discarded", user_id, subject)
    await asyncio.to_thread(remove_files, data_dir, [r["path"] for r in rows])
    return await subjects.get(db, subject_id)


async def tell_owner(db: aiosqlite.Connection, subject: Subject, text: str) -> None:
    """A notice to the owner in the channel of their /train, delivered through the outbox (exactly once)."""
    request = await fetch_one(db, "SELECT channel_id FROM train_requests WHERE subject_id = ?", (subject.id,))
    await outbox.post(db, kind="notice", payload={"text": text}, user_id=subject.owner_id,
                      guild_id=subject.guild_id, channel_id=request["channel_id"] if request else None)
