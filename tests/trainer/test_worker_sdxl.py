"""The worker on an SDXL base model: a training job, then a generate job with two SDXL subjects."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
from safetensors import safe_open

from storage import artifacts, jobs, lifecycle, subjects
from storage import db as storage_db
from storage.config import FamilySettings
from tests.trainer.conftest import add_subject, make_app_cfg
from trainer.worker import Worker


async def _train(db, cfg, subject):
    job = (await lifecycle.queue_training(db, subject_id=subject.id, queue=cfg.storage.queue, params={})).job
    await Worker(cfg.trainer, cfg.storage).run(until_job=job.id)
    return await jobs.get(db, job.id)


@pytest.fixture(scope="module")
def trained_sdxl(tiny_sdxl_model, photo_dir, tmp_path_factory):
    """A data dir where the worker trained two subjects on the tiny SDXL model."""
    cfg = make_app_cfg(tiny_sdxl_model, tmp_path_factory.mktemp("worker-sdxl") / "data")
    # the tiny model's size, and no SDXL presets: the test config's fast presets apply
    families = {**cfg.trainer.families, "sdxl": FamilySettings(64)}
    cfg = replace(cfg, trainer=replace(cfg.trainer, families=families, grid_images=2))
    paths = sorted(photo_dir.glob("*.png"))

    async def build():
        async with storage_db.connect(cfg.storage.database) as db:
            rex = await add_subject(db, cfg, paths, name="rex")
            fido = await add_subject(db, cfg, paths[:2], name="fido")
            return [await _train(db, cfg, s) for s in (rex, fido)]
    return cfg, asyncio.run(build())


async def test_sdxl_training_job_records_an_sdxl_adapter(trained_sdxl):
    """Both jobs succeed, and each subject's kohya copy says it was trained on SDXL base."""
    cfg, done = trained_sdxl
    assert [j.state for j in done] == ["succeeded", "succeeded"], [j.error for j in done]
    async with storage_db.connect(cfg.storage.database) as db:
        subject = await subjects.get(db, done[0].subject_id)
        adapter = await artifacts.get(db, subject.adapter_artifact_id)
    kohya = [p for p in (Path(cfg.storage.data_dir) / adapter.path).parent.rglob("*.safetensors")
             if "kohya" in p.name]
    assert kohya
    with safe_open(str(kohya[0]), framework="pt") as f:
        assert f.metadata()["ss_base_model_version"] == "sdxl_base_v1-0"


async def test_sdxl_generate_job_with_two_subjects(trained_sdxl):
    """A generate job with both SDXL subjects makes its images."""
    cfg, done = trained_sdxl
    async with storage_db.connect(cfg.storage.database) as db:
        ids = [j.subject_id for j in done]
        job = await jobs.enqueue(db, kind="generate", user_id=1, params={
            "prompt": "a photo of sks dog", "subject_ids": ids, "n": 2, "seed": 7, "steps": 2, "guidance": None},
            cfg=cfg.storage.queue, subject_id=ids[0])
        await Worker(cfg.trainer, cfg.storage).run(until_job=job.id)
        job = await jobs.get(db, job.id)
    assert job.state == "succeeded", job.error
