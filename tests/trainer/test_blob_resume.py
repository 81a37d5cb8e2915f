"""Workers on separate hosts share nothing but the database and the object store (storage.blob_url): a training
stopped on one resumes on another from its last checkpoint, and a third generates with the adapter."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
from pathlib import Path

import pytest

from storage import artifacts, blobs, files, jobs, lifecycle
from storage import db as storage_db
from tests.s3_server import s3_keys
from tests.trainer.conftest import add_subject, make_app_cfg
from trainer.errors import CannotStart
from trainer.worker import Worker

PREFIX = "fleet"


@pytest.fixture
def fleet(tiny_model, tmp_path, s3_bucket, monkeypatch):
    """fleet(name): the config of one host: its own empty data dir, the shared database and bucket."""
    import trainer.train

    monkeypatch.setattr(trainer.train, "LOG_EVERY_SECONDS", 0.0)
    made = []

    def host(name: str):
        cfg = make_app_cfg(tiny_model, tmp_path / name / "data")
        storage = dataclasses.replace(cfg.storage, db_path=tmp_path / "fleet.sqlite3",
                                      blob_url=f"s3://{s3_bucket}/{PREFIX}")
        blobs.attach(storage)  # as `dreambot` does for every command
        made.append(storage)
        return dataclasses.replace(cfg, storage=storage)

    yield host
    for storage in made:
        blobs.attach(dataclasses.replace(storage, blob_url=""))


async def test_a_training_stopped_on_one_host_resumes_on_another_from_the_store(fleet, photo_paths, s3_bucket):
    """Worker A stops after a checkpoint; its data dir is then lost. Worker B, with an empty data dir, resumes from
    A's last checkpoint in the bucket and finishes; worker C generates with the adapter; the bot's host reads the
    grid. The bucket keeps only the checkpoints the database records."""
    bot, a, b, c = fleet("bot"), fleet("a"), fleet("b"), fleet("c")
    async with storage_db.connect(bot.storage.database) as db:
        subject = await add_subject(db, bot, photo_paths[:2])
        job = (await lifecycle.queue_training(db, subject_id=subject.id, queue=bot.storage.queue,
                                              params={"steps": 6})).job

    loop = asyncio.get_running_loop()

    def stop_after_first_grid(kind, payload):
        if kind == "grid":
            loop.call_soon_threadsafe(worker_a.request_shutdown)

    worker_a = Worker(a.trainer, a.storage, listener=stop_after_first_grid)
    await asyncio.wait_for(worker_a.run(until_job=job.id), timeout=300)
    async with storage_db.connect(bot.storage.database) as db:
        assert (await jobs.get(db, job.id)).state == "queued"
        left = [art.meta["step"] for art in await artifacts.for_job(db, job.id, "checkpoint")]
    assert left and max(left) < 6
    shutil.rmtree(a.storage.data_dir)  # host A is gone: nothing of it but the bucket remains

    await asyncio.wait_for(Worker(b.trainer, b.storage).run(until_job=job.id), timeout=300)
    async with storage_db.connect(bot.storage.database) as db:
        done = await jobs.get(db, job.id)
        assert done.state == "succeeded", done.error
        assert done.result["resumed_from"] == max(left)
        recorded = {art.path for art in await artifacts.for_job(db, job.id, "checkpoint")}
    in_bucket = {"/".join(k.split("/")[1:5]) for k in s3_keys(s3_bucket, f"{PREFIX}/jobs/{job.id}/checkpoints/")}
    assert in_bucket == recorded
    assert _personal_files(b) == []  # B's cache kept none of the photos, checkpoints or adapter

    async with storage_db.connect(bot.storage.database) as db:
        gen = await jobs.enqueue(db, kind="generate", user_id=subject.owner_id, cfg=bot.storage.queue,
                                 subject_id=subject.id, params={"prompt": "a photo of sks dog", "n": 1, "seed": 3,
                                                                "steps": 2, "subject_ids": [subject.id]})
    await asyncio.wait_for(Worker(c.trainer, c.storage).run(until_job=gen.id), timeout=300)
    async with storage_db.connect(bot.storage.database) as db:
        made = await jobs.get(db, gen.id)
        assert made.state == "succeeded", made.error
        grid = (await artifacts.for_job(db, gen.id, "grid"))[0]
    bot_dir = Path(bot.storage.data_dir)
    assert not (bot_dir / grid.path).exists()
    assert files.local(bot_dir, grid.path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _personal_files(c) == []


def _personal_files(cfg) -> list[Path]:
    """Files of a user left in a host's scratch cache: photos, job outputs, adapters (class images are no one's)."""
    data = Path(cfg.storage.data_dir)
    return [p for folder in ("blobs", "jobs", "subjects") for p in (data / folder).rglob("*") if p.is_file()]


async def test_a_worker_refuses_to_start_without_its_store(app_cfg, s3_env):
    """A bucket that does not exist stops the worker before it claims anything, naming the store."""
    storage = dataclasses.replace(app_cfg.storage, blob_url="s3://no-such-bucket/fleet")
    try:
        with pytest.raises(CannotStart, match="s3://no-such-bucket/fleet at .* does not exist"):
            await Worker(app_cfg.trainer, storage).run(idle_exit=True)
    finally:
        blobs.attach(app_cfg.storage)
