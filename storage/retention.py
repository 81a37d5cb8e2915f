"""Retention: generated images and grids, and the photos of subjects whose training failed, expire.

`sweep` is run periodically by the worker and on demand by `dreambot db sweep`. Adapters of
ready subjects and consents are kept until their owner or a moderator deletes them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from storage import files
from storage.config import RetentionConfig
from storage.db import fetch_all, now, transaction

log = logging.getLogger(__name__)
DAY = 86_400.0


@dataclass(frozen=True)
class SweepReport:
    images: int
    photos: int


async def sweep(db: aiosqlite.Connection, *, data_dir: Path, cfg: RetentionConfig,
                at: float | None = None) -> SweepReport:
    """Delete what has outlived its retention period; returns how many images and photos went."""
    t = now() if at is None else at
    images = photos = 0
    if cfg.generated_days:
        query = """
            DELETE FROM artifacts
            WHERE kind IN ('image', 'grid') AND created_at < ?
              AND job_id IN (SELECT id FROM jobs WHERE kind = 'generate')
            RETURNING path
        """
        async with transaction(db):
            rows = await fetch_all(db, query, (t - cfg.generated_days * DAY,))
        for row in rows:
            files.remove(data_dir, row["path"])
        images = len(rows)
    if cfg.failed_job_photos_days:
        query = """
            DELETE FROM photos
            WHERE subject_id IN (SELECT id FROM subjects WHERE state IN ('failed', 'rejected') AND updated_at < ?)
            RETURNING path
        """
        async with transaction(db):
            rows = await fetch_all(db, query, (t - cfg.failed_job_photos_days * DAY,))
        still_used = {r["path"] for r in await fetch_all(db, "SELECT path FROM photos")}
        for row in rows:
            if row["path"] not in still_used:  # blobs are shared by content
                files.remove(data_dir, row["path"])
        photos = len(rows)
    if images or photos:
        log.info("retention sweep deleted %d generated images and %d photos", images, photos)
    return SweepReport(images=images, photos=photos)
