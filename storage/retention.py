"""Retention: what outlives its time is deleted, and files no row points at are collected.

`sweep` runs periodically in the bot and on demand as `dreambot db sweep`:
- generated images, and the grids and checkpoints of every job, after `generated_days` (a
  checkpoint whose adapter its owner chose stays while it is in use);
- the photos of subjects whose training failed or was cancelled, after `failed_job_photos_days`
  (a revoked subject's photos went at revocation, storage.lifecycle);
- orphans: a job's or a subject's folder whose row is gone, and photo blobs no photo uses, left
  behind by a crash between a commit and its file deletion; with an object store (storage.blobs),
  those in the store as well as those in this host's cache.
Each row is handled alone: one that fails is logged and counted, and the sweep goes on.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from storage import blobs, files
from storage.config import RetentionConfig
from storage.db import fetch_all, fetch_one, now, transaction
from storage.errors import BlobStoreError

log = logging.getLogger(__name__)
DAY = 86_400.0
ORPHAN_GRACE_SECONDS = 3600.0  # a blob younger than this may belong to a draft being written


@dataclass(frozen=True)
class SweepReport:
    images: int  # generated images, grids and checkpoints
    photos: int
    orphans: int
    errors: int


async def sweep(db: aiosqlite.Connection, *, data_dir: Path, cfg: RetentionConfig,
                at: float | None = None) -> SweepReport:
    """Delete what has outlived its retention period, and orphaned files; never raises for one bad row."""
    t = now() if at is None else at
    data_dir = Path(data_dir)
    tally = _Tally()
    images = photos = 0
    if cfg.generated_days:
        query = """
            SELECT id, path FROM artifacts AS a
            WHERE kind IN ('image', 'grid', 'checkpoint') AND created_at < ?
              AND NOT EXISTS (SELECT 1 FROM artifacts AS chosen JOIN subjects AS s ON s.adapter_artifact_id = chosen.id
                              WHERE CAST(json_extract(chosen.meta, '$.from_checkpoint') AS INTEGER) = a.id)
            ORDER BY id
        """
        for row in await fetch_all(db, query, (t - cfg.generated_days * DAY,)):
            images += await tally.attempt(row["path"], _delete_artifact(db, data_dir, row["id"], row["path"]))
    if cfg.failed_job_photos_days:
        query = """
            SELECT p.id, p.path FROM photos AS p JOIN subjects AS s ON s.id = p.subject_id
            WHERE s.state IN ('failed', 'cancelled') AND s.updated_at < ? ORDER BY p.id
        """
        for row in await fetch_all(db, query, (t - cfg.failed_job_photos_days * DAY,)):
            photos += await tally.attempt(row["path"], _delete_photo(db, data_dir, row["id"], row["path"]))
    orphans = await _collect_orphans(db, data_dir, tally, at=t)
    if images or photos or orphans or tally.errors:
        log.info("retention sweep deleted %d generated files, %d photos and %d orphans; %d errors",
                 images, photos, orphans, tally.errors)
    return SweepReport(images=images, photos=photos, orphans=orphans, errors=tally.errors)


class _Tally:
    """The rows one sweep could not handle: each is logged and counted, and the sweep goes on."""

    def __init__(self) -> None:
        self.errors = 0

    async def attempt(self, what: str, work: Awaitable[bool]) -> int:
        """1 when `work` deleted something, 0 when there was nothing or it failed."""
        try:
            return int(await work)
        except Exception:
            log.exception("retention sweep could not delete %s; going on", what)
            self.errors += 1
            return 0


async def _delete_artifact(db: aiosqlite.Connection, data_dir: Path, artifact_id: int, path: str) -> bool:
    async with transaction(db):
        await db.execute("DELETE FROM artifacts WHERE id = ?", (artifact_id,))
    await _remove(data_dir, path)
    return True


async def _delete_photo(db: aiosqlite.Connection, data_dir: Path, photo_id: int, path: str) -> bool:
    async with transaction(db):
        await db.execute("DELETE FROM photos WHERE id = ?", (photo_id,))
        still = await fetch_one(db, "SELECT 1 FROM photos WHERE path = ?", (path,))
    if still is None:  # blobs are shared by content
        await _remove(data_dir, path)
    return True


async def _remove(data_dir: Path, rel: str) -> bool:
    return await asyncio.to_thread(files.remove, data_dir, rel)


async def _listed(tally: _Tally, folder: str, listing, empty):
    """What the object store holds under `folder`; when it cannot be listed, logged and counted, and the sweep goes
    on with this host's files."""
    try:
        return await asyncio.to_thread(listing, folder)
    except BlobStoreError:
        log.exception("retention sweep could not list %s in the object store; going on", folder)
        tally.errors += 1
        return empty


async def _collect_orphans(db: aiosqlite.Connection, data_dir: Path, tally: _Tally, *, at: float) -> int:
    """Orphans here and, with an object store, there too: this host's cache may never have held them."""
    store = blobs.for_dir(data_dir)
    found = 0
    for folder, table in (("jobs", "jobs"), ("subjects", "subjects")):
        root = data_dir / folder
        names = {entry.name for entry in root.iterdir()} if root.is_dir() else set()
        names |= await _listed(tally, folder, store.children, set())
        if not names:
            continue
        known = {r[0] for r in await fetch_all(db, f"SELECT id FROM {table}")}
        for name in sorted(names):
            if name.isdigit() and int(name) not in known:
                found += await tally.attempt(name, _remove(data_dir, f"{folder}/{name}"))
    candidates: dict[str, float] = {}  # blob path -> last written, here or in the store
    blob_dir = data_dir / files.BLOB_DIR
    if blob_dir.is_dir():
        for blob in blob_dir.glob("*/*"):
            if not blob.name.startswith(".tmp-"):
                candidates[blob.relative_to(data_dir).as_posix()] = blob.stat().st_mtime
    for rel, modified in await _listed(tally, files.BLOB_DIR, store.files, []):
        candidates[rel] = max(modified, candidates.get(rel, modified))
    if candidates:
        used = {r[0] for r in await fetch_all(db, "SELECT DISTINCT path FROM photos")}
        for rel, modified in sorted(candidates.items()):
            if rel not in used and modified < at - ORPHAN_GRACE_SECONDS:
                # checked again right before deleting: a photo may have been attached since the listing
                if await fetch_one(db, "SELECT 1 FROM photos WHERE path = ?", (rel,)) is None:
                    found += await tally.attempt(rel, _remove(data_dir, rel))
    return found



async def drop_stale_cache(db: aiosqlite.Connection, *, data_dir: Path) -> int:
    """With an object store, drop this host's cached copies of photos, job files and adapters that no running
    job uses: what a worker killed mid-job left on its disk (a later /forget, run elsewhere, could not reach
    it). A worker runs this at start. Files of running jobs stay (another worker may share this data dir).
    Returns how many cached files or folders were dropped; without an object store, 0."""
    data_dir = Path(data_dir)
    if not blobs.for_dir(data_dir).remote:
        return 0
    running = await fetch_all(db, "SELECT id, subject_id, params FROM jobs WHERE state = 'running'")
    subject_ids = {r["subject_id"] for r in running if r["subject_id"] is not None}
    for row in running:
        subject_ids |= set(json.loads(row["params"] or "{}").get("subject_ids") or ())
    keep = {f"jobs/{r['id']}" for r in running} | {f"subjects/{s}" for s in subject_ids}
    if subject_ids:
        marks = ",".join("?" * len(subject_ids))
        keep |= {r["path"] for r in await fetch_all(
            db, f"SELECT path FROM photos WHERE subject_id IN ({marks})", tuple(subject_ids))}

    def drop() -> int:
        dropped = 0
        for folder in ("jobs", "subjects"):
            for child in sorted((data_dir / folder).glob("*")):
                rel = f"{folder}/{child.name}"
                dropped += rel not in keep and files.evict(data_dir, rel)
        for blob in sorted((data_dir / files.BLOB_DIR).rglob("*")):
            rel = blob.relative_to(data_dir).as_posix()
            dropped += blob.is_file() and rel not in keep and files.evict(data_dir, rel)
        return dropped
    return await asyncio.to_thread(drop)
