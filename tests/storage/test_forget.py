"""Forgetting a user deletes their rows and files for real, keeping only a tombstone."""

from __future__ import annotations

import pytest

from storage import artifacts, audit, consent, jobs, lifecycle, subjects
from storage import db as database
from storage.errors import LeaseLost
from tests.helpers import consented, trained


async def _user_with_everything(db, cfg, user_id: int) -> subjects.Subject:
    """A trained subject (photos, consent, adapter, a finished job, its event, usage) and a queued /imagine
    (with its cooldown)."""
    data_dir, queue = cfg.storage.data_dir, cfg.storage.queue
    subject = await trained(db, data_dir, owner_id=user_id, guild_id=9, queue=queue)
    await lifecycle.queue_images(db, lifecycle.ImageRequest(user_id=user_id, guild_id=9, channel_id=5,
                                                            prompt="rex in space"), queue=queue,
                                 limits=lifecycle.Limits(cooldown_seconds=60))
    return subject


async def _files_of(db, data_dir, subject: subjects.Subject) -> list:
    photo_files = [data_dir / p.path for p in await subjects.photos(db, subject.id)]
    made = [data_dir / a.path for a in await artifacts.for_subject(db, subject.id)]
    assert photo_files and made and all(f.exists() for f in photo_files + made)
    return photo_files + made


async def test_forget_removes_rows_and_files(db, cfg):
    """Every row of the user is gone and their photo and adapter files are deleted from disk."""
    data_dir = cfg.storage.data_dir
    subject = await _user_with_everything(db, cfg, 1)
    on_disk = await _files_of(db, data_dir, subject)
    report = await lifecycle.forget_user(db, user_id=1, data_dir=data_dir)
    assert (report.subjects, report.photos, report.consents, report.jobs, report.artifacts) == (1, 3, 1, 2, 2)
    for table, column in [("subjects", "owner_id"), ("consents", "user_id"), ("jobs", "user_id"),
                          ("artifacts", "user_id"), ("outbox", "user_id"), ("usage", "user_id"),
                          ("rate_limits", "user_id")]:
        (n,) = await database.fetch_one(db, f"SELECT count(*) FROM {table} WHERE {column} = 1")
        assert n == 0, table
    assert not any(f.exists() for f in on_disk)
    assert not (data_dir / f"subjects/{subject.id}").exists()


async def test_forget_leaves_only_a_tombstone(db, cfg):
    """The audit log keeps one user.forgotten entry with counts and nothing else about the user."""
    await _user_with_everything(db, cfg, 1)
    await lifecycle.forget_user(db, user_id=1, data_dir=cfg.storage.data_dir, actor_id=1)
    (entry,) = await audit.recent(db, target_user_id=1)
    assert entry.action == "user.forgotten" and entry.detail["photos"] == 3


async def test_forget_keeps_other_users_and_shared_photos(db, cfg):
    """Another user's data, even a photo blob identical to one of the forgotten user's, survives."""
    data_dir = cfg.storage.data_dir
    first = await _user_with_everything(db, cfg, 1)
    second = await _user_with_everything(db, cfg, 2)
    shared = (await subjects.photos(db, first.id))[0]  # the same picture, sent by both
    await subjects.add_photo(db, subject_id=second.id, sha256=shared.sha256, path=shared.path, width=shared.width,
                             height=shared.height, size_bytes=shared.size_bytes)
    kept = await _files_of(db, data_dir, second)
    await lifecycle.forget_user(db, user_id=1, data_dir=data_dir)
    assert all(f.exists() for f in kept)
    assert len(await subjects.photos(db, second.id)) == 4
    assert await consent.active(db, second.id) is not None
    assert (await subjects.get(db, second.id)).state == "trained"


async def test_running_job_of_forgotten_user_is_fenced_off(db, cfg):
    """A worker still running the user's training gets LeaseLost at its next write."""
    await consented(db, cfg.storage.data_dir, queue=cfg.storage.queue, review=False)
    job = await jobs.claim(db, worker_id="w", lease_seconds=30)
    await lifecycle.forget_user(db, user_id=1, data_dir=cfg.storage.data_dir)
    with pytest.raises(LeaseLost):
        await jobs.heartbeat(db, job_id=job.id, lease_token=job.lease_token, lease_seconds=30)
    with pytest.raises(LeaseLost):
        await lifecycle.begin_training(db, job_id=job.id, lease_token=job.lease_token)
