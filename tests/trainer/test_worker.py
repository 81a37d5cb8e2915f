"""The worker against a real SQLite queue: train and generate jobs, the class-image cache, failures."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from storage import artifacts, jobs, outbox, subjects, usage
from storage import db as storage_db
from tests.trainer.conftest import add_subject, make_app_cfg
from trainer.worker import Worker


async def _events(db, job_id: int) -> list:
    return [e for e in await outbox.pending(db, limit=1000) if e.job_id == job_id]


async def _train(db, cfg, subject, **params):
    job = await jobs.enqueue(db, kind="train", user_id=subject.owner_id, params=params, cfg=cfg.storage.queue,
                             subject_id=subject.id)
    await Worker(cfg.trainer, cfg.storage).run(until_job=job.id)
    return await jobs.get(db, job.id)


@pytest.fixture(scope="module")
def trained(tiny_model, photo_dir, tmp_path_factory):
    """A data dir where two dog subjects of one owner were trained by the worker, one after the other."""
    cfg = make_app_cfg(tiny_model, tmp_path_factory.mktemp("worker") / "data")
    paths = sorted(photo_dir.glob("*.png"))

    async def build():
        async with storage_db.connect(cfg.storage.database) as db:
            rex = await add_subject(db, cfg, paths, name="rex")
            fido = await add_subject(db, cfg, paths[:2], name="fido")
            return (await _train(db, cfg, rex)).id, (await _train(db, cfg, fido)).id
    first, second = asyncio.run(build())
    return cfg, first, second


@pytest.fixture
async def db_of(trained):
    async with storage_db.connect(trained[0].storage.database) as db:
        yield db


async def test_train_job_succeeds_and_readies_the_subject(trained, db_of):
    """The job succeeds; the subject is ready and points at the recorded adapter."""
    cfg, job_id, _ = trained
    job = await jobs.get(db_of, job_id)
    assert job.state == "succeeded", job.error
    subject = await subjects.get(db_of, job.subject_id)
    adapter = await artifacts.get(db_of, subject.adapter_artifact_id)
    assert subject.state == "ready" and adapter.kind == "adapter"
    assert (Path(cfg.storage.data_dir) / adapter.path / "pytorch_lora_weights.safetensors").is_file()


async def test_train_job_posts_progress_grids_and_done(trained, db_of):
    """The outbox gets progress, a grid per checkpoint and train_done with every artifact id."""
    _, job_id, _ = trained
    events = await _events(db_of, job_id)
    kinds = [e.kind for e in events]
    assert "progress" in kinds and kinds.count("grid") == 2 and kinds[-1] == "train_done"
    done = events[-1].payload
    assert {"adapter_artifact_id", "kohya_artifact_id", "grid_artifact_id", "checkpoints"} <= set(done)
    assert [c["step"] for c in done["checkpoints"]] == [2, 4]
    assert (await artifacts.get(db_of, done["kohya_artifact_id"])).kind == "adapter_kohya"


async def test_train_job_records_usage(trained, db_of):
    """GPU seconds of the job are recorded for its user."""
    _, job_id, _ = trained
    rows = await usage.totals(db_of, by="user_id")
    assert rows[0].gpu_seconds > 0 and rows[0].jobs == 2


async def test_class_images_are_reused_by_a_second_job(trained, db_of):
    """The second dog subject reuses the first job's class images instead of generating them again."""
    cfg, first, second = trained
    assert len(list((Path(cfg.storage.data_dir) / "class_images").iterdir())) == 1
    messages = [e.payload["message"] for e in await _events(db_of, second) if e.kind == "progress"]
    assert any(m.startswith("Reusing") for m in messages)
    assert not any(m.startswith("Generating") for m in messages)
    assert any(m.startswith("Generating") for m in
               [e.payload["message"] for e in await _events(db_of, first) if e.kind == "progress"])


async def _generate(db, cfg, subject_ids, prompt="a photo of sks dog", n=2, seed=7):
    job = await jobs.enqueue(db, kind="generate", user_id=1, params={
        "prompt": prompt, "subject_ids": subject_ids, "n": n, "seed": seed, "steps": 2, "guidance": None},
        cfg=cfg.storage.queue)
    await Worker(cfg.trainer, cfg.storage).run(until_job=job.id)
    return await jobs.get(db, job.id)


@pytest.mark.parametrize("count", [1, 2])
async def test_generate_job_with_one_or_two_subjects(trained, db_of, count):
    """Images and a grid are recorded and announced, with their seeds."""
    cfg, first, second = trained
    ids = [(await jobs.get(db_of, j)).subject_id for j in (first, second)][:count]
    job = await _generate(db_of, cfg, ids)
    assert job.state == "succeeded", job.error
    event = (await _events(db_of, job.id))[-1]
    assert event.kind == "images" and event.payload["seeds"] == [7, 8]
    images = [await artifacts.get(db_of, i) for i in event.payload["image_artifact_ids"]]
    assert [a.kind for a in images] == ["image", "image"]
    assert all((Path(cfg.storage.data_dir) / a.path).stat().st_size > 0 for a in images)


async def test_generate_refuses_an_overlong_prompt_for_good(trained, db_of):
    """A prompt over 77 tokens fails at once with the reason, and is not retried."""
    cfg, first, _ = trained
    job = await _generate(db_of, cfg, [(await jobs.get(db_of, first)).subject_id], prompt="dog " * 90)
    assert job.state == "failed" and "tokens long" in job.error
    assert (await _events(db_of, job.id))[-1].kind == "failed"


async def test_unknown_preset_fails_without_retry(app_cfg, photo_paths):
    """An input error marks the job failed (not queued again) and the subject failed."""
    cfg = app_cfg
    async with storage_db.connect(cfg.storage.database) as db:
        subject = await add_subject(db, cfg, photo_paths[:1])
        job = await _train(db, cfg, subject, preset="turbo")
        assert job.state == "failed" and "no preset called 'turbo'" in job.error
        assert (await subjects.get(db, subject.id)).state == "failed"


async def test_revoked_subject_is_not_trained(app_cfg, photo_paths):
    """A subject revoked before its job runs is refused."""
    async with storage_db.connect(app_cfg.storage.database) as db:
        subject = await add_subject(db, app_cfg, photo_paths[:1])
        await subjects.set_state(db, subject_id=subject.id, state="revoked")
        job = await _train(db, app_cfg, subject)
        assert job.state == "failed" and "revoked" in job.error


async def _run_and_interrupt(cfg, subject, on_first_step):
    """Start a long training job; call on_first_step(worker, job) once it reports a step."""
    async with storage_db.connect(cfg.storage.database) as db:
        job = await jobs.enqueue(db, kind="train", user_id=subject.owner_id, params={"steps": 500},
                                 cfg=cfg.storage.queue, subject_id=subject.id)
    loop = asyncio.get_running_loop()
    fired = []

    def listen(kind, payload):
        if kind == "progress" and payload.get("step") and not fired:
            fired.append(asyncio.run_coroutine_threadsafe(on_first_step(worker, job), loop))

    worker = Worker(cfg.trainer, cfg.storage, listener=listen)
    await asyncio.wait_for(worker.run(until_job=job.id), timeout=120)
    return job


async def test_cancel_stops_a_running_training(tiny_model, tmp_path, photo_paths, monkeypatch):
    """A cancel request reaches the worker by heartbeat; the job ends cancelled and says so."""
    import trainer.train

    monkeypatch.setattr(trainer.train, "LOG_EVERY_SECONDS", 0.0)
    cfg = make_app_cfg(tiny_model, tmp_path / "data", lease_seconds=3)
    async with storage_db.connect(cfg.storage.database) as db:
        subject = await add_subject(db, cfg, photo_paths[:1])

    async def cancel(worker, job):
        async with storage_db.connect(cfg.storage.database) as db:
            await jobs.cancel(db, job_id=job.id)

    job = await _run_and_interrupt(cfg, subject, cancel)
    async with storage_db.connect(cfg.storage.database) as db:
        assert (await jobs.get(db, job.id)).state == "cancelled"
        assert (await _events(db, job.id))[-1].kind == "cancelled"


async def test_shutdown_checkpoints_and_releases_the_job(tiny_model, tmp_path, photo_paths, monkeypatch):
    """On SIGTERM a training checkpoints and goes back to the queue without spending an attempt."""
    import trainer.train

    monkeypatch.setattr(trainer.train, "LOG_EVERY_SECONDS", 0.0)
    cfg = make_app_cfg(tiny_model, tmp_path / "data")
    async with storage_db.connect(cfg.storage.database) as db:
        subject = await add_subject(db, cfg, photo_paths[:1])

    async def shutdown(worker, job):
        worker.request_shutdown()

    job = await _run_and_interrupt(cfg, subject, shutdown)
    async with storage_db.connect(cfg.storage.database) as db:
        after = await jobs.get(db, job.id)
    assert after.state == "queued" and after.attempts == 0
    assert trainer.train.checkpoint_dirs(Path(cfg.storage.data_dir) / "jobs" / str(job.id))
