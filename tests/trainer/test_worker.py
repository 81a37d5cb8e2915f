"""The worker against a real SQLite queue: train and generate jobs, the class-image cache, failures."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from storage import artifacts, audit, guilds, jobs, lifecycle, outbox, provenance, subjects, usage
from storage import db as storage_db
from tests.trainer.conftest import add_subject, make_app_cfg
from trainer.errors import CannotStart
from trainer.safety import SafetyCheckerUnavailable
from trainer.worker import Worker


async def _events(db, job_id: int) -> list:
    return [e for e in await outbox.pending(db, limit=1000) if e.job_id == job_id]


async def _train(db, cfg, subject, **params):
    job = (await lifecycle.queue_training(db, subject_id=subject.id, queue=cfg.storage.queue, params=params)).job
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
    assert subject.state == "trained" and adapter.kind == "adapter"
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
    """GPU seconds of each training job are recorded for its user (whatever other tests ran on this data)."""
    _, first, second = trained
    rows = {t.key: t for t in await usage.totals(db_of, by="subject_id")}
    for job_id in (first, second):
        subject_id = (await jobs.get(db_of, job_id)).subject_id
        assert rows[subject_id].gpu_seconds > 0 and rows[subject_id].jobs >= 1


async def test_class_images_are_reused_by_a_second_job(trained, db_of):
    """The second dog subject reuses the first job's class images instead of generating them again."""
    cfg, first, second = trained
    assert len(list((Path(cfg.storage.data_dir) / "class_images").iterdir())) == 1
    messages = [e.payload["message"] for e in await _events(db_of, second) if e.kind == "progress"]
    assert any(m.startswith("Reusing") for m in messages)
    assert not any(m.startswith("Generating") for m in messages)
    assert any(m.startswith("Generating") for m in
               [e.payload["message"] for e in await _events(db_of, first) if e.kind == "progress"])


async def _generate(db, cfg, subject_ids, prompt="a photo of sks dog", n=2, seed=7, guild_id=None):
    # Straight into the queue, as the lifecycle would after its checks: the prompt is the worker's words.
    job = await jobs.enqueue(db, kind="generate", user_id=1, params={
        "prompt": prompt, "subject_ids": subject_ids, "n": n, "seed": seed, "steps": 2, "guidance": None},
        cfg=cfg.storage.queue, subject_id=subject_ids[0], guild_id=guild_id)
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
    """A subject revoked before its job runs is never trained: its job is cancelled with it."""
    async with storage_db.connect(app_cfg.storage.database) as db:
        subject = await add_subject(db, app_cfg, photo_paths[:1])
        job = (await lifecycle.queue_training(db, subject_id=subject.id, queue=app_cfg.storage.queue)).job
        await lifecycle.revoke(db, subject_id=subject.id, guild_id=None, moderator_id=7, reason="test",
                               data_dir=app_cfg.storage.data_dir)
        await Worker(app_cfg.trainer, app_cfg.storage).run(until_job=job.id, idle_exit=True)
        job = await jobs.get(db, job.id)
        assert job.state == "cancelled" and job.attempts == 0


async def _run_and_interrupt(cfg, subject, on_first_step):
    """Start a long training job; call on_first_step(worker, job) once it reports a step."""
    async with storage_db.connect(cfg.storage.database) as db:
        job = (await lifecycle.queue_training(db, subject_id=subject.id, queue=cfg.storage.queue,
                                              params={"steps": 500})).job
    loop = asyncio.get_running_loop()
    fired = []

    def listen(kind, payload):
        if kind == "progress" and payload.get("step") and not fired:
            fired.append(asyncio.run_coroutine_threadsafe(on_first_step(worker, job), loop))

    worker = Worker(cfg.trainer, cfg.storage, listener=listen)
    await asyncio.wait_for(worker.run(until_job=job.id), timeout=120)
    return job


@pytest.fixture
async def long_training(tiny_model, tmp_path, photo_paths, monkeypatch):
    """A config and a consented subject for a training long enough to interrupt; progress on every step."""
    import trainer.train

    monkeypatch.setattr(trainer.train, "LOG_EVERY_SECONDS", 0.0)
    cfg = make_app_cfg(tiny_model, tmp_path / "data", lease_seconds=3)
    async with storage_db.connect(cfg.storage.database) as db:
        subject = await add_subject(db, cfg, photo_paths[:1])
    return cfg, subject


async def test_cancel_stops_a_running_training(long_training):
    """A cancel reaches the running worker within seconds; the job and its subject end cancelled, the owner
    is told, and nothing the job made is left on disk or in the database."""
    cfg, subject = long_training

    async def cancel(worker, job):
        async with storage_db.connect(cfg.storage.database) as db:
            await lifecycle.cancel_job(db, job_id=job.id, data_dir=cfg.storage.data_dir)

    job = await _run_and_interrupt(cfg, subject, cancel)
    async with storage_db.connect(cfg.storage.database) as db:
        assert (await jobs.get(db, job.id)).state == "cancelled"
        assert (await _events(db, job.id))[-1].kind == "cancelled"
        assert (await subjects.get(db, subject.id)).state == "cancelled"
        assert await artifacts.for_job(db, job.id) == []
    assert not (Path(cfg.storage.data_dir) / "jobs" / str(job.id)).exists()


async def test_shutdown_checkpoints_and_releases_the_job(long_training):
    """On SIGTERM a training checkpoints and goes back to the queue without spending an attempt."""
    cfg, subject = long_training

    async def shutdown(worker, job):
        worker.request_shutdown()

    job = await _run_and_interrupt(cfg, subject, shutdown)
    async with storage_db.connect(cfg.storage.database) as db:
        after = await jobs.get(db, job.id)
    assert after.state == "queued" and after.attempts == 0
    import trainer.checkpoints

    assert trainer.checkpoints.checkpoint_dirs(Path(cfg.storage.data_dir) / "jobs" / str(job.id))


async def test_forget_during_training_stops_it_and_leaves_nothing(long_training):
    """/forget while the worker trains: it stops within seconds, and no file, row or usage of the user is left."""
    cfg, subject = long_training

    async def forget(worker, job):
        async with storage_db.connect(cfg.storage.database) as db:
            await lifecycle.forget_user(db, user_id=subject.owner_id, data_dir=cfg.storage.data_dir)

    started = asyncio.get_running_loop().time()
    job = await _run_and_interrupt(cfg, subject, forget)
    assert asyncio.get_running_loop().time() - started < 60
    data = Path(cfg.storage.data_dir)
    assert not (data / "jobs" / str(job.id)).exists() and not (data / "subjects" / str(subject.id)).exists()
    assert not list((data / "blobs").rglob("*.*"))
    async with storage_db.connect(cfg.storage.database) as db:
        assert await usage.totals(db, by="user_id", user_id=subject.owner_id) == []
        assert [e.action for e in await audit.recent(db, target_user_id=subject.owner_id)] == ["user.forgotten"]


async def test_a_locked_database_is_waited_out(app_cfg, monkeypatch):
    """Another writer holding the database past the busy timeout: the worker retries instead of dying."""
    import dataclasses
    import sqlite3
    import threading

    import trainer.worker

    monkeypatch.setattr(trainer.worker, "BUSY_BACKOFF_SECONDS", (0.1, 0.5))
    cfg = dataclasses.replace(app_cfg, storage=dataclasses.replace(app_cfg.storage, busy_timeout_ms=50))
    async with storage_db.connect(cfg.storage.database):
        pass  # create and migrate
    holder = sqlite3.connect(cfg.storage.database, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    threading.Timer(1.5, holder.rollback).start()
    worker = Worker(cfg.trainer, cfg.storage)
    await asyncio.wait_for(worker.run(idle_exit=True), timeout=30)  # returns once the queue is seen empty
    holder.close()


# --- the safety checker -----------------------------------------------------------------------------

def with_checker(cfg, setting: str):
    return dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, safety_checker=setting))


async def test_flagged_images_are_never_saved_under_block(trained, db_of, flags_everything):
    """Under the default policy a flagged image is not stored at all; the job succeeds and says how many were
    withheld, with no grid left to show."""
    cfg, first, _ = trained
    job = await _generate(db_of, with_checker(cfg, str(flags_everything)), [(await jobs.get(db_of, first)).subject_id])
    assert job.state == "succeeded", job.error
    event = (await _events(db_of, job.id))[-1]
    assert event.kind == "images" and event.payload["withheld"] == 2
    assert event.payload["image_artifact_ids"] == [] and event.payload["grid_artifact_id"] is None
    assert await artifacts.for_job(db_of, job.id) == []
    assert not list((Path(cfg.storage.data_dir) / "jobs" / str(job.id)).rglob("*.png"))


async def test_flagged_images_are_kept_marked_under_spoiler(trained, db_of, flags_everything):
    """Under "spoiler-in-age-restricted" flagged images and their grid are stored with meta nsfw, none withheld."""
    cfg, first, _ = trained
    await guilds.set_policy(db_of, guild_id=55, by=9, nsfw="spoiler-in-age-restricted")
    job = await _generate(db_of, with_checker(cfg, str(flags_everything)),
                          [(await jobs.get(db_of, first)).subject_id], guild_id=55)
    event = (await _events(db_of, job.id))[-1]
    assert event.payload["withheld"] == 0 and len(event.payload["image_artifact_ids"]) == 2
    made = [await artifacts.get(db_of, i) for i in [*event.payload["image_artifact_ids"],
                                                     event.payload["grid_artifact_id"]]]
    assert [a.meta.get("nsfw") for a in made] == [True, True, True]


async def test_unflagged_images_are_stored_unmarked(trained, db_of):
    """The tiny model's own checker passes its images: all are stored, none marked, none withheld."""
    cfg, first, _ = trained
    job = await _generate(db_of, cfg, [(await jobs.get(db_of, first)).subject_id])
    event = (await _events(db_of, job.id))[-1]
    assert event.payload["withheld"] == 0 and len(event.payload["image_artifact_ids"]) == 2
    stored = [await artifacts.get(db_of, i) for i in event.payload["image_artifact_ids"]]
    assert not any(a.meta.get("nsfw") for a in stored)


async def test_flagged_grid_tiles_are_greyed_under_block(tiny_model, photo_paths, tmp_path, flags_everything):
    """A training whose sample tiles are all flagged saves grids of plain grey tiles, each recorded (and
    announced) with how many tiles it withheld."""
    from PIL import Image

    cfg = with_checker(make_app_cfg(tiny_model, tmp_path / "data"), str(flags_everything))
    cfg = dataclasses.replace(cfg, trainer=dataclasses.replace(cfg.trainer, grid_resolution=64))  # 64 px tiles
    async with storage_db.connect(cfg.storage.database) as db:
        job = await _train(db, cfg, await add_subject(db, cfg, photo_paths[:1]))
        assert job.state == "succeeded", job.error
        grids = await artifacts.for_job(db, job.id, "grid")
        events = [e.payload for e in await _events(db, job.id) if e.kind == "grid"]
    assert len(grids) == 2 and len(events) == 2
    for grid, event in zip(grids, events, strict=True):
        image = Image.open(Path(cfg.storage.data_dir) / grid.path).convert("RGB")
        tiles = (image.width // 64) * (image.height // 64)
        assert image.getcolors() == [(image.width * image.height, (128, 128, 128))]
        assert grid.meta == {"step": event["step"], "nsfw": False, "withheld": tiles, "flagged": tiles}
        assert (event["nsfw"], event["withheld"]) == (False, tiles)


async def test_worker_refuses_to_start_without_its_checker(app_cfg, photo_paths, tmp_path):
    """A checker that cannot be loaded stops the worker before it claims anything: the job stays queued."""
    cfg = with_checker(app_cfg, str(tmp_path / "no-such-checker"))
    async with storage_db.connect(cfg.storage.database) as db:
        subject = await add_subject(db, cfg, photo_paths[:1])
        job = (await lifecycle.queue_training(db, subject_id=subject.id, queue=cfg.storage.queue)).job
        with pytest.raises(SafetyCheckerUnavailable, match="dreambot fetch-model"):
            await Worker(cfg.trainer, cfg.storage).run(idle_exit=True)
        job = await jobs.get(db, job.id)
    assert job.state == "queued" and job.attempts == 0


async def test_worker_refuses_to_start_without_its_base_model(app_cfg, tmp_path, monkeypatch):
    """A hub id that was never downloaded stops the worker at start-up with the command that fetches it."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    cfg = dataclasses.replace(app_cfg, trainer=dataclasses.replace(app_cfg.trainer, base_model="someone/never-fetched"))
    with pytest.raises(CannotStart, match="dreambot fetch-model someone/never-fetched"):
        await Worker(cfg.trainer, cfg.storage).run(idle_exit=True)


def test_worker_command_exits_with_the_configuration_code(app_cfg, tmp_path, capsys):
    """`dreambot worker` without a loadable checker prints why and exits EXIT_CONFIG, which `dreambot run` does
    not restart."""
    from storage.config import EXIT_CONFIG
    from trainer.cli import build_parser

    args = build_parser().parse_args(["worker"])
    assert args.func(args, with_checker(app_cfg, str(tmp_path / "no-such-checker"))) == EXIT_CONFIG
    assert 'trainer.safety_checker = "off"' in capsys.readouterr().err


async def test_off_runs_unchecked_and_says_so(trained, db_of, caplog):
    """With trainer.safety_checker = "off" the worker runs, warns once in its log, and withholds nothing."""
    import logging

    cfg, first, _ = trained
    with caplog.at_level(logging.WARNING, logger="trainer.worker"):
        job = await _generate(db_of, with_checker(cfg, "off"), [(await jobs.get(db_of, first)).subject_id])
    assert job.state == "succeeded" and (await _events(db_of, job.id))[-1].payload["withheld"] == 0
    assert [r.getMessage() for r in caplog.records].count(
        'trainer.safety_checker = "off": generated images and sample grids are not checked') == 1


async def test_generated_images_say_they_are_ai_made(trained, db_of):
    """Each stored image records the AI source type, the base model, the adapter's file hash and its own seed."""
    cfg, first, _ = trained
    subject = await subjects.get(db_of, (await jobs.get(db_of, first)).subject_id)
    adapter = await artifacts.get(db_of, subject.adapter_artifact_id)
    weights = Path(cfg.storage.data_dir) / adapter.path / "pytorch_lora_weights.safetensors"
    job = await _generate(db_of, cfg, [subject.id], seed=11)
    event = (await _events(db_of, job.id))[-1]
    reports = [provenance.read(Path(cfg.storage.data_dir) / (await artifacts.get(db_of, i)).path)
               for i in [*event.payload["image_artifact_ids"], event.payload["grid_artifact_id"]]]
    assert all(r.ai_generated for r in reports)
    assert {r.base_model for r in reports} == {provenance.public_model_name(cfg.trainer.base_model)}
    assert all(r.lora_sha256 == (provenance.sha256_file(weights),) for r in reports)
    assert [r.seed for r in reports] == [11, 12, None]  # the grid has no single seed


async def test_sample_grids_say_they_are_ai_made(trained, db_of):
    """A training's sample grid records the AI source type and the hash of its checkpoint's adapter."""
    cfg, job_id, _ = trained
    grids = [e.payload["artifact_id"] for e in await _events(db_of, job_id) if e.kind == "grid"]
    report = provenance.read(Path(cfg.storage.data_dir) / (await artifacts.get(db_of, grids[0])).path)
    assert report.ai_generated and len(report.lora_sha256) == 1 and report.seed is None


async def test_the_operators_stated_license_is_written_into_the_lora(app_cfg, photo_paths):
    """trainer.model_license reaches the exported kohya file's metadata (modelspec.license)."""
    from safetensors import safe_open

    from trainer import lora

    cfg = dataclasses.replace(app_cfg, trainer=dataclasses.replace(app_cfg.trainer,
                                                                     model_license="apache-2.0"))
    async with storage_db.connect(cfg.storage.database) as db:
        subject = await add_subject(db, cfg, photo_paths, name="rex")
        job = await _train(db, cfg, subject)
        assert job.state == "succeeded", job.error
        done = [e for e in await _events(db, job.id) if e.kind == "train_done"][-1].payload
        kohya = await artifacts.get(db, done["kohya_artifact_id"])
    with safe_open(str(Path(cfg.storage.data_dir) / kohya.path), framework="pt") as f:
        assert f.metadata()["modelspec.license"] == "apache-2.0"
    assert lora.read_license(Path(cfg.storage.data_dir) / kohya.path)["license"] == "apache-2.0"


async def test_a_train_result_says_where_the_time_went(trained, db_of):
    """A train job's result has its timings: claim to first step above 0 and below the total, every part >= 0."""
    cfg, first, second = trained
    timings = (await jobs.get(db_of, first)).result["timings"]
    assert set(timings) == {"claim_to_first_step", "class_images", "training", "grids", "total"}
    assert 0 < timings["claim_to_first_step"] < timings["total"]
    assert timings["class_images"] > 0 and timings["grids"] > 0 and timings["training"] > 0
    assert timings["class_images"] + timings["training"] + timings["grids"] <= timings["total"]


async def test_reused_class_images_take_no_time(trained, db_of):
    """The second subject of the class reuses the class images: its timings count 0.0 for them."""
    cfg, first, second = trained
    assert (await jobs.get(db_of, second)).result["timings"]["class_images"] == 0.0


async def test_a_warm_worker_loads_the_base_model_once(app_cfg, photo_paths, monkeypatch):
    """One worker running a training, a generation and a second training loads the base pipeline once."""
    from trainer import models

    loads = []
    real = models.load_pipeline

    def counting(*args, **kwargs):
        loads.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(models, "load_pipeline", counting)
    async with storage_db.connect(app_cfg.storage.database) as db:
        rex = await add_subject(db, app_cfg, photo_paths, name="rex")
        fido = await add_subject(db, app_cfg, photo_paths[:2], name="fido")
        queue, worker, ids = app_cfg.storage.queue, Worker(app_cfg.trainer, app_cfg.storage), []
        for enqueue in (
                lambda: lifecycle.queue_training(db, subject_id=rex.id, queue=queue, params={}),
                lambda: jobs.enqueue(db, kind="generate", user_id=1, subject_id=rex.id, cfg=queue, params={
                    "prompt": "a photo of sks dog", "subject_ids": [rex.id], "n": 1, "seed": 1, "steps": 2}),
                lambda: lifecycle.queue_training(db, subject_id=fido.id, queue=queue, params={})):
            queued = await enqueue()
            ids.append(getattr(queued, "job", queued).id)
            await worker.run(until_job=ids[-1])  # the same worker, one job after the other
        states = [(await jobs.get(db, i)).state for i in ids]
    assert states == ["succeeded"] * 3 and len(loads) == 1


def _oom_above(limit: int, tried: list[int]):
    """A stand-in for trainer.data.generate_class_images that runs out of CUDA memory above `limit` images a batch
    (no GPU here to run out of); it records each batch size tried."""
    import torch

    def generate(pipe, out_dir, *, batch_size, **kwargs):
        tried.append(batch_size)
        if batch_size > limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (stand-in)")
        return out_dir
    return generate


@pytest.mark.parametrize(("limit", "tried"), [(4, [4]), (2, [4, 2]), (1, [4, 2, 1])])
def test_class_images_halve_their_batch_on_out_of_memory(app_cfg, tmp_path, monkeypatch, limit, tried):
    """Class images start at generation_batch's size (4 on the CPU) and halve on each out-of-memory error."""
    from trainer import data, models
    from trainer.config import TrainConfig

    seen = []
    monkeypatch.setattr(data, "generate_class_images", _oom_above(limit, seen))
    worker = Worker(app_cfg.trainer, app_cfg.storage)
    worker._runtime = models.pick_runtime("cpu")
    job = dataclasses.make_dataclass("Job", ["id"])(1)
    done = worker._generate_class_images(job, TrainConfig(class_images=10), None, tmp_path / "c", should_stop=bool)
    assert done == tmp_path / "c" and seen == tried


def test_class_images_out_of_memory_at_batch_one_fails_the_job(app_cfg, tmp_path, monkeypatch):
    """When even one image a batch runs out of memory, the job fails for good with a message saying what to do."""
    from trainer import data, models
    from trainer.config import TrainConfig
    from trainer.errors import OutOfMemory

    monkeypatch.setattr(data, "generate_class_images", _oom_above(0, []))
    worker = Worker(app_cfg.trainer, app_cfg.storage)
    worker._runtime = models.pick_runtime("cpu")
    job = dataclasses.make_dataclass("Job", ["id"])(1)
    with pytest.raises(OutOfMemory, match="smaller resolution"):
        worker._generate_class_images(job, TrainConfig(class_images=10), None, tmp_path / "c", should_stop=bool)
