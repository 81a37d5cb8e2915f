"""Retention: old generated files, ended subjects' photos and orphaned files are deleted; the rest stays."""

from __future__ import annotations

import os
import time

import pytest

from storage import artifacts, files, jobs, lifecycle, retention, subjects
from storage.config import QueueConfig, RetentionConfig
from tests.helpers import consented, trained

DAY = 86_400.0
LATER = time.time() + 31 * DAY  # past the default generated_days and failed_job_photos_days


def _write(data_dir, rel: str, data: bytes = b"png") -> str:
    path = data_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return rel


async def _generated_image(db, data_dir, name: str = "a") -> artifacts.Artifact:
    """An image recorded for an /imagine job."""
    job = await jobs.enqueue(db, kind="generate", user_id=1, params={}, cfg=QueueConfig())
    rel = _write(data_dir, f"jobs/{job.id}/images/{name}.png")
    return await artifacts.record(db, kind="image", path=rel, data_dir=data_dir, job_id=job.id, user_id=1)


async def _training_with_checkpoint(db, data_dir, *, keep_checkpoint: bool) -> dict[str, artifacts.Artifact]:
    """A training run to the end through the lifecycle, with a checkpoint and its grid; the owner keeps the
    final adapter, or falls back to the checkpoint's."""
    queued = await consented(db, data_dir, review=False)
    job = await jobs.claim(db, worker_id="w", lease_seconds=60, kinds=("train",))
    await lifecycle.begin_training(db, job_id=job.id, lease_token=job.lease_token)
    fence = {"job_id": job.id, "lease_token": job.lease_token, "data_dir": data_dir}
    ckpt_rel = f"jobs/{job.id}/checkpoints/step-000005"
    _write(data_dir, f"{ckpt_rel}/adapter/pytorch_lora_weights.safetensors", b"w5")
    made = {"checkpoint": await lifecycle.record_artifact(db, kind="checkpoint", path=ckpt_rel, meta={"step": 5},
                                                          **fence),
            "grid": await lifecycle.record_artifact(db, kind="grid", path=_write(data_dir, f"jobs/{job.id}/grid.png"),
                                                    meta={"step": 5}, **fence)}
    adapter = _write(data_dir, f"subjects/{job.subject_id}/job-{job.id}-adapter/pytorch_lora_weights.safetensors")
    kohya = _write(data_dir, f"subjects/{job.subject_id}/job-{job.id}-kohya.safetensors", b"kohya")
    await lifecycle.finish_training(db, job_id=job.id, lease_token=job.lease_token, kohya_path=kohya,
                                    adapter_path=adapter.rsplit("/", 1)[0], meta={}, result={}, data_dir=data_dir,
                                    gpu_seconds=1.0)
    if keep_checkpoint:
        await lifecycle.choose_adapter(db, subject_id=queued.subject.id, user_id=queued.subject.owner_id,
                                       artifact_id=made["checkpoint"].id, data_dir=data_dir)
    return made


async def test_old_generated_images_expire(db, cfg):
    """Images of generate jobs past generated_days are deleted from disk and database."""
    data_dir = cfg.storage.data_dir
    image = await _generated_image(db, data_dir)
    report = await retention.sweep(db, data_dir=data_dir, cfg=RetentionConfig(generated_days=30), at=LATER)
    assert report.images == 1 and not (data_dir / image.path).exists()
    assert await artifacts.get(db, image.id) is None


async def test_recent_images_stay(db, cfg):
    """An image younger than generated_days survives the sweep."""
    data_dir = cfg.storage.data_dir
    image = await _generated_image(db, data_dir)
    report = await retention.sweep(db, data_dir=data_dir, cfg=RetentionConfig(generated_days=30))
    assert report.images == 0 and (data_dir / image.path).exists()


async def test_old_training_grids_and_checkpoints_expire_but_the_adapter_stays(db, cfg):
    """A training's grids and checkpoints go after generated_days; its final adapter, in use, stays."""
    data_dir = cfg.storage.data_dir
    made = await _training_with_checkpoint(db, data_dir, keep_checkpoint=False)
    report = await retention.sweep(db, data_dir=data_dir, cfg=RetentionConfig(generated_days=30), at=LATER)
    assert report.images == 2
    assert not (data_dir / made["grid"].path).exists() and not (data_dir / made["checkpoint"].path).exists()
    (subject,) = await subjects.list_for_owner(db, 1)
    adapter = await artifacts.get(db, subject.adapter_artifact_id)
    assert (data_dir / adapter.path / "pytorch_lora_weights.safetensors").exists()


async def test_a_checkpoint_holding_the_chosen_adapter_stays(db, cfg):
    """A checkpoint whose adapter the owner chose is kept past generated_days, so the subject still works."""
    data_dir = cfg.storage.data_dir
    made = await _training_with_checkpoint(db, data_dir, keep_checkpoint=True)
    report = await retention.sweep(db, data_dir=data_dir, cfg=RetentionConfig(generated_days=30), at=LATER)
    assert report.images == 1 and not (data_dir / made["grid"].path).exists()
    (subject,) = await subjects.list_for_owner(db, 1)
    adapter = await artifacts.get(db, subject.adapter_artifact_id)
    assert adapter.meta["from_checkpoint"] == made["checkpoint"].id
    assert (data_dir / adapter.path / "pytorch_lora_weights.safetensors").exists()


async def _failed(db, data_dir) -> subjects.Subject:
    queued = await consented(db, data_dir, review=False)
    job = await jobs.claim(db, worker_id="w", lease_seconds=60, kinds=("train",))
    await lifecycle.begin_training(db, job_id=job.id, lease_token=job.lease_token)
    await lifecycle.fail_job(db, job_id=job.id, lease_token=job.lease_token, error="photos unreadable",
                             retryable=False, queue=QueueConfig())
    return await subjects.get(db, queued.subject.id)


async def _cancelled(db, data_dir) -> subjects.Subject:
    queued = await consented(db, data_dir, review=False)
    await lifecycle.cancel_job(db, job_id=queued.job.id, data_dir=data_dir, user_id=queued.subject.owner_id)
    return await subjects.get(db, queued.subject.id)


@pytest.mark.parametrize(("ended", "state"), [(_failed, "failed"), (_cancelled, "cancelled")])
async def test_ended_subjects_photos_expire(db, cfg, ended, state):
    """Photos of a subject whose training failed or was cancelled go after failed_job_photos_days."""
    data_dir = cfg.storage.data_dir
    subject = await ended(db, data_dir)
    blobs = [data_dir / p.path for p in await subjects.photos(db, subject.id)]
    assert subject.state == state and all(b.exists() for b in blobs)
    report = await retention.sweep(db, data_dir=data_dir, cfg=RetentionConfig(failed_job_photos_days=7), at=LATER)
    assert report.photos == 3 and not any(b.exists() for b in blobs)
    assert await subjects.photos(db, subject.id) == []


async def test_trained_subjects_photos_stay(db, cfg):
    """A trained subject's photos are never swept, however old."""
    data_dir = cfg.storage.data_dir
    subject = await trained(db, data_dir)
    report = await retention.sweep(db, data_dir=data_dir, cfg=RetentionConfig(failed_job_photos_days=7), at=LATER)
    assert report.photos == 0 and len(await subjects.photos(db, subject.id)) == 3


async def test_orphaned_folders_and_blobs_are_collected(db, cfg):
    """Folders of jobs and subjects whose rows are gone, and old blobs no photo uses, are deleted."""
    data_dir = cfg.storage.data_dir
    subject = await trained(db, data_dir)
    live = [data_dir / p.path for p in await subjects.photos(db, subject.id)] + [data_dir / f"subjects/{subject.id}"]
    orphans = [data_dir / _write(data_dir, "jobs/999/images/a.png"), data_dir / _write(data_dir, "subjects/998/x")]
    _, blob = files.put_blob(data_dir, b"left behind by a crash", ".jpg")
    report = await retention.sweep(db, data_dir=data_dir, cfg=RetentionConfig(), at=time.time() + 2 * 3600)
    assert report.orphans == 3 and report.errors == 0
    assert not any(p.exists() for p in orphans) and not (data_dir / blob).exists()
    assert all(p.exists() for p in live)


async def test_a_fresh_unused_blob_stays(db, cfg):
    """A blob not yet attached to a photo is left alone for a while: a draft may be being written."""
    data_dir = cfg.storage.data_dir
    _, blob = files.put_blob(data_dir, b"a draft's photo, row not yet written", ".jpg")
    report = await retention.sweep(db, data_dir=data_dir, cfg=RetentionConfig())
    assert report.orphans == 0 and (data_dir / blob).exists()


async def test_a_bad_row_does_not_stop_the_sweep(db, cfg, tmp_path):
    """A row whose file can't be deleted is logged and counted; the rest of the sweep still happens."""
    data_dir = cfg.storage.data_dir
    bad = await _generated_image(db, data_dir, "bad")
    good = await _generated_image(db, data_dir, "good")
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"not dreambot's")
    os.replace(data_dir / bad.path, data_dir / "link.tmp")
    (data_dir / bad.path).symlink_to(outside)  # files.remove refuses a path that leads out of the data dir
    (data_dir / "link.tmp").unlink()
    subject = await _failed(db, data_dir)
    report = await retention.sweep(db, data_dir=data_dir, cfg=RetentionConfig(), at=LATER)
    assert (report.images, report.photos, report.errors) == (1, 3, 1)
    assert outside.exists() and not (data_dir / good.path).exists()
    assert await subjects.photos(db, subject.id) == []
