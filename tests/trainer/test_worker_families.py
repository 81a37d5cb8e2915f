"""The worker on the other base model families: SD 2.x (v-prediction) and SDXL, each trained and generated with.

Each family's tiny model is made through `dreambot make-tiny-model`, read for its family from its own
config, trained twice by the real worker, then used for one generate job with both subjects.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
from safetensors import safe_open

from storage import artifacts, jobs, lifecycle, model_families, subjects
from storage import db as storage_db
from storage.config import Config, FamilySettings
from tests.trainer.conftest import add_subject, make_app_cfg
from trainer import lora
from trainer.worker import Worker

# family -> (make-tiny-model arguments, what the kohya file must say it was trained on, prediction type)
FAMILIES = {
    "sd2": (["--prediction-type", "v_prediction"], "sd_v2_v", "v_prediction"),
    "sdxl": (["--arch", "sdxl"], "sdxl_base_v1-0", "epsilon"),
}


async def _train(db, cfg, subject):
    job = (await lifecycle.queue_training(db, subject_id=subject.id, queue=cfg.storage.queue, params={})).job
    await Worker(cfg.trainer, cfg.storage).run(until_job=job.id)
    return await jobs.get(db, job.id)


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def trained(request, photo_dir, tmp_path_factory):
    """A data dir where the worker trained two subjects on the family's tiny model."""
    import torch

    from trainer.cli import build_parser

    family = request.param
    if family == "sdxl":
        model = request.getfixturevalue("tiny_sdxl_model")  # the session's, also used by test_sdxl.py
    else:
        torch.set_num_threads(1)
        model = tmp_path_factory.mktemp("models") / f"tiny-{family}"
        args = build_parser().parse_args(["make-tiny-model", str(model), "--seed", "0", *FAMILIES[family][0]])
        assert args.func(args, Config()) == 0
    cfg = make_app_cfg(model, tmp_path_factory.mktemp(f"worker-{family}") / "data")
    # the tiny model's size, and no family presets: the test config's fast presets apply
    families = {**cfg.trainer.families, family: FamilySettings(64)}
    cfg = replace(cfg, trainer=replace(cfg.trainer, families=families, grid_images=2))
    paths = sorted(photo_dir.glob("*.png"))

    async def build():
        async with storage_db.connect(cfg.storage.database) as db:
            rex = await add_subject(db, cfg, paths, name="rex")
            fido = await add_subject(db, cfg, paths[:2], name="fido")
            return [await _train(db, cfg, s) for s in (rex, fido)]
    return family, cfg, asyncio.run(build())


async def test_the_family_is_read_from_the_models_own_config(trained):
    """The tiny model made for the family is detected as that family, with its prediction type."""
    family, cfg, _ = trained
    found = model_families.detect(cfg.trainer.base_model)
    assert (found.name, found.prediction_type) == (family, FAMILIES[family][2])


async def test_training_jobs_record_the_familys_adapter(trained):
    """Both jobs succeed; the adapter says its prediction type and the kohya copy names the family's version."""
    family, cfg, done = trained
    assert [j.state for j in done] == ["succeeded", "succeeded"], [j.error for j in done]
    async with storage_db.connect(cfg.storage.database) as db:
        subject = await subjects.get(db, done[0].subject_id)
        adapter = await artifacts.get(db, subject.adapter_artifact_id)
    folder = Path(cfg.storage.data_dir) / adapter.path
    assert lora.read_metadata(folder)["prediction_type"] == FAMILIES[family][2]
    kohya = [p for p in folder.parent.rglob("*.safetensors") if "kohya" in p.name]
    assert kohya
    with safe_open(str(kohya[0]), framework="pt") as f:
        assert f.metadata()["ss_base_model_version"] == FAMILIES[family][1]


async def test_generate_job_with_two_subjects(trained):
    """A generate job with both subjects of the family makes its images."""
    _, cfg, done = trained
    async with storage_db.connect(cfg.storage.database) as db:
        ids = [j.subject_id for j in done]
        job = await jobs.enqueue(db, kind="generate", user_id=1, params={
            "prompt": "a photo of sks dog", "subject_ids": ids, "n": 2, "seed": 7, "steps": 2, "guidance": None},
            cfg=cfg.storage.queue, subject_id=ids[0])
        await Worker(cfg.trainer, cfg.storage).run(until_job=job.id)
        job = await jobs.get(db, job.id)
    assert job.state == "succeeded", job.error
    assert len(job.result["image_artifact_ids"]) == 2
