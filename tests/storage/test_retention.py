"""Retention: old generated images and failed subjects' photos are deleted; the rest stays."""

from __future__ import annotations

import time

from storage import artifacts, files, jobs, retention, subjects
from storage.config import RetentionConfig

DAY = 86_400.0


async def _image(db, cfg, *, kind: str, job_kind: str, name: str):
    job = await jobs.enqueue(db, kind=job_kind, user_id=1, params={}, cfg=cfg.storage.queue, at=0.0)
    path = cfg.storage.data_dir / f"jobs/{job.id}/{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"png")
    await artifacts.record(db, kind=kind, path=f"jobs/{job.id}/{name}.png", data_dir=cfg.storage.data_dir,
                           job_id=job.id, user_id=1)
    return path


async def test_old_generated_images_expire(db, cfg):
    """Images of generate jobs past generated_days are deleted from disk and database."""
    path = await _image(db, cfg, kind="image", job_kind="generate", name="a")
    report = await retention.sweep(db, data_dir=cfg.storage.data_dir, cfg=RetentionConfig(generated_days=30),
                                   at=time.time() + 31 * DAY)
    assert report.images == 1 and not path.exists()


async def test_recent_images_and_training_grids_stay(db, cfg):
    """A fresh image and a training job's sample grid survive the sweep."""
    fresh = await _image(db, cfg, kind="image", job_kind="generate", name="b")
    grid = await _image(db, cfg, kind="grid", job_kind="train", name="c")
    report = await retention.sweep(db, data_dir=cfg.storage.data_dir, cfg=RetentionConfig(generated_days=30))
    assert report.images == 0 and fresh.exists()
    report = await retention.sweep(db, data_dir=cfg.storage.data_dir, cfg=RetentionConfig(generated_days=30),
                                   at=1e12)
    assert grid.exists()


async def test_failed_subjects_photos_expire(db, cfg):
    """Photos of a subject whose training failed go after failed_job_photos_days."""
    s = await subjects.create(db, owner_id=1, guild_id=9, name="rex", class_noun="dog")
    digest, rel = files.put_blob(cfg.storage.data_dir, b"photo", ".png")
    await subjects.add_photo(db, subject_id=s.id, sha256=digest, path=rel, width=512, height=512)
    await subjects.set_state(db, subject_id=s.id, state="failed")
    report = await retention.sweep(db, data_dir=cfg.storage.data_dir, cfg=RetentionConfig(failed_job_photos_days=7),
                                   at=1e12)
    assert report.photos == 1 and not (cfg.storage.data_dir / rel).exists()
    assert await subjects.photos(db, s.id) == []
