"""Forgetting a user deletes their rows and files for real, keeping only a tombstone."""

from __future__ import annotations

import pytest

from storage import artifacts, audit, consent, files, jobs, outbox, privacy, subjects, usage
from storage import db as database
from storage.errors import LeaseLost


async def _user_with_everything(db, cfg, user_id: int, photo: bytes):
    data_dir = cfg.storage.data_dir
    s = await subjects.create(db, owner_id=user_id, guild_id=9, name="rex", class_noun="dog")
    digest, rel = files.put_blob(data_dir, photo, ".png")
    await subjects.add_photo(db, subject_id=s.id, sha256=digest, path=rel, width=512, height=512)
    await consent.grant(db, subject_id=s.id, user_id=user_id, guild_id=9, text="I agree")
    job = await jobs.enqueue(db, kind="train", user_id=user_id, params={}, cfg=cfg.storage.queue, subject_id=s.id)
    adapter = data_dir / f"subjects/{s.id}/adapter/pytorch_lora_weights.safetensors"
    adapter.parent.mkdir(parents=True)
    adapter.write_bytes(b"weights")
    await artifacts.record(db, kind="adapter", path=f"subjects/{s.id}/adapter", data_dir=data_dir, job_id=job.id,
                           subject_id=s.id, user_id=user_id)
    await outbox.post(db, kind="progress", payload={"step": 1}, job_id=job.id, user_id=user_id)
    await usage.record(db, user_id=user_id, kind="train", gpu_seconds=3.0, job_id=job.id)
    await audit.append(db, action="subject.created", actor_id=user_id, target_user_id=user_id, subject_id=s.id)
    return s, rel, adapter


async def test_forget_removes_rows_and_files(db, cfg):
    """Every row of the user is gone and their photo and adapter files are deleted from disk."""
    s, rel, adapter = await _user_with_everything(db, cfg, 1, b"photo-of-rex")
    report = await privacy.forget_user(db, user_id=1, data_dir=cfg.storage.data_dir)
    assert (report.subjects, report.photos, report.consents, report.jobs, report.artifacts) == (1, 1, 1, 1, 1)
    for table, column in [("subjects", "owner_id"), ("consents", "user_id"), ("jobs", "user_id"),
                          ("artifacts", "user_id"), ("outbox", "user_id"), ("usage", "user_id")]:
        (n,) = await database.fetch_one(db, f"SELECT count(*) FROM {table} WHERE {column} = 1")
        assert n == 0, table
    assert not (cfg.storage.data_dir / rel).exists()
    assert not adapter.exists() and not adapter.parent.parent.exists()


async def test_forget_leaves_only_a_tombstone(db, cfg):
    """The audit log keeps one user.forgotten entry with counts and nothing else about the user."""
    await _user_with_everything(db, cfg, 1, b"photo-of-rex")
    await privacy.forget_user(db, user_id=1, data_dir=cfg.storage.data_dir, actor_id=1)
    (entry,) = await audit.recent(db, target_user_id=1)
    assert entry.action == "user.forgotten" and entry.detail["photos"] == 1


async def test_forget_keeps_other_users_and_shared_photos(db, cfg):
    """Another user's data, even an identical photo blob, survives."""
    await _user_with_everything(db, cfg, 1, b"same-bytes")
    s2, rel2, adapter2 = await _user_with_everything(db, cfg, 2, b"same-bytes")
    await privacy.forget_user(db, user_id=1, data_dir=cfg.storage.data_dir)
    assert (cfg.storage.data_dir / rel2).exists() and adapter2.exists()
    assert len(await subjects.photos(db, s2.id)) == 1
    assert await consent.active(db, s2.id) is not None


async def test_running_job_of_forgotten_user_is_fenced_off(db, cfg):
    """A worker still running the user's job gets LeaseLost at its next write."""
    await _user_with_everything(db, cfg, 1, b"photo")
    job = await jobs.claim(db, worker_id="w", lease_seconds=30)
    await privacy.forget_user(db, user_id=1, data_dir=cfg.storage.data_dir)
    with pytest.raises(LeaseLost):
        await jobs.heartbeat(db, job_id=job.id, lease_token=job.lease_token, lease_seconds=30)
