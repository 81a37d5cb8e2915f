"""Single-file checkpoints offline: faithful round trips from the tiny SD 1.x and SDXL models, training from
one, and the configs dreambot ships for each family."""

from __future__ import annotations

import dataclasses

import pytest

from storage import db as storage_db
from storage import jobs, lifecycle
from storage.model_families import Family
from tests.trainer.conftest import add_subject
from tests.trainer.ldm_checkpoint import to_single_file
from trainer import models
from trainer.worker import Worker


def convertible_sdxl_pipeline():
    """The tiny SDXL model with a wider second text encoder (48 against 32): diffusers' converter tells SDXL's
    two encoders apart by their width, as the real ones differ (768 and 1280)."""
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from trainer.tiny_model import build_random_pipeline

    pipe = build_random_pipeline("tiny-sdxl")
    width = 48
    text_2 = CLIPTextModelWithProjection(CLIPTextConfig(**{
        **pipe.text_encoder_2.config.to_dict(), "hidden_size": width, "projection_dim": width}))
    unet = UNet2DConditionModel.from_config({
        **pipe.unet.config, "cross_attention_dim": pipe.text_encoder.config.hidden_size + width,
        "projection_class_embeddings_input_dim": 6 * pipe.unet.config.addition_time_embed_dim + width})
    return StableDiffusionXLPipeline(**{**pipe.components, "text_encoder_2": text_2, "unet": unet})


@pytest.fixture(scope="module")
def single_file(tiny_model, tmp_path_factory):
    """The tiny model saved as one original-layout (LDM) .safetensors checkpoint."""
    pipe = models.load_pipeline(str(tiny_model), models.pick_runtime("cpu"))
    return to_single_file(pipe, tmp_path_factory.mktemp("single") / "tiny-sd15.safetensors")


def test_a_single_file_is_recognised_as_sd1_from_its_keys(single_file):
    """The converted file reads as SD 1.x from its tensor names alone."""
    assert models.single_file_family(single_file).name == "sd1"


@pytest.mark.parametrize("component", ["unet", "vae", "text_encoder"])
def test_a_single_file_loads_offline_as_the_same_model(tiny_model, single_file, component):
    """Loaded offline with configs beside it, the single file holds exactly the folder's weights."""
    import torch

    cpu = models.pick_runtime("cpu")
    folder = getattr(models.load_pipeline(str(tiny_model), cpu), component).state_dict()
    loaded = getattr(models.load_pipeline(str(single_file), cpu, single_file_config=str(tiny_model)),
                     component).state_dict()
    assert folder.keys() == loaded.keys()
    assert all(torch.equal(folder[k], loaded[k]) for k in folder)


@pytest.fixture(scope="module")
def sdxl_single_file(tmp_path_factory):
    """(folder, file): a tiny SDXL model in the diffusers layout and as one original-layout checkpoint."""
    root = tmp_path_factory.mktemp("single-xl")
    convertible_sdxl_pipeline().save_pretrained(root / "xl")
    pipe = models.load_pipeline(str(root / "xl"), models.pick_runtime("cpu"))
    return root / "xl", to_single_file(pipe, root / "tiny-sdxl.safetensors")


def test_an_sdxl_single_file_loads_offline_as_the_same_sdxl_model(sdxl_single_file):
    """An SDXL single file is read as SDXL from its keys and loads, offline, both text encoders and all."""
    import torch
    from diffusers import StableDiffusionXLPipeline

    folder, file = sdxl_single_file
    cpu = models.pick_runtime("cpu")
    assert models.single_file_family(file).name == "sdxl"
    expected = models.load_pipeline(str(folder), cpu)
    loaded = models.load_pipeline(str(file), cpu, single_file_config=str(folder))
    assert isinstance(loaded, StableDiffusionXLPipeline)
    for component in ("unet", "vae", "text_encoder", "text_encoder_2"):
        want, got = getattr(expected, component).state_dict(), getattr(loaded, component).state_dict()
        assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want), component


async def test_the_worker_trains_from_a_single_file(app_cfg, single_file, tiny_model, photo_paths):
    """A training job whose base model is a single-file checkpoint succeeds through the worker."""
    cfg = dataclasses.replace(app_cfg, trainer=dataclasses.replace(
        app_cfg.trainer, base_model=str(single_file), single_file_config=str(tiny_model),
        safety_checker=str(tiny_model), class_images=2))
    async with storage_db.connect(cfg.storage.database) as db:
        subject = await add_subject(db, cfg, photo_paths[:1])
        job = (await lifecycle.queue_training(db, subject_id=subject.id, queue=cfg.storage.queue,
                                              params={"steps": 2})).job
        await Worker(cfg.trainer, cfg.storage).run(until_job=job.id)
        job = await jobs.get(db, job.id)
    assert job.state == "succeeded", job.error


async def test_the_worker_refuses_an_unsupported_model_for_good(app_cfg, tiny_model, photo_paths, tmp_path):
    """A job on an inpainting model fails at once with the supported families named, and is not retried."""
    import json
    import shutil

    inpaint = tmp_path / "inpaint"
    shutil.copytree(tiny_model, inpaint)
    unet = json.loads((inpaint / "unet" / "config.json").read_text())
    (inpaint / "unet" / "config.json").write_text(json.dumps({**unet, "in_channels": 9}))
    cfg = dataclasses.replace(app_cfg, trainer=dataclasses.replace(
        app_cfg.trainer, base_model=str(inpaint), safety_checker=str(tiny_model)))
    async with storage_db.connect(cfg.storage.database) as db:
        subject = await add_subject(db, cfg, photo_paths[:1])
        job = (await lifecycle.queue_training(db, subject_id=subject.id, queue=cfg.storage.queue)).job
        await Worker(cfg.trainer, cfg.storage).run(until_job=job.id)
        job = await jobs.get(db, job.id)
    assert job.state == "failed" and job.attempts == 1
    assert "inpainting" in job.error and "SDXL base" in job.error


# (family, text encoders' parameters in millions, UNet's) of SD 1.5, SD 2.1 and SDXL base 1.0
REAL_SIZES = [("sd1", (123.06,), 859.52), ("sd2", (340.39,), 865.91), ("sdxl", (123.06, 694.66), 2567.46)]


@pytest.mark.parametrize(("family", "text", "unet"), REAL_SIZES)
def test_shipped_configs_describe_the_real_architectures(tmp_path, family, text, unet):
    """Each family's shipped configs build models of the real parameter counts (on the meta device)."""
    import transformers
    from accelerate import init_empty_weights
    from diffusers import DiffusionPipeline, UNet2DConditionModel

    folder = models.write_family_config(Family(family, "epsilon", family), tmp_path / family)
    index = DiffusionPipeline.load_config(str(folder))
    encoders = [name for name in ("text_encoder", "text_encoder_2") if name in index]
    millions = lambda m: round(sum(p.numel() for p in m.parameters()) / 1e6, 2)  # noqa: E731
    with init_empty_weights():
        built = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(str(folder / "unet")))
        encoder_sizes = tuple(
            millions(getattr(transformers, index[name][1])(transformers.CLIPTextConfig.from_pretrained(folder / name)))
            for name in encoders)
    assert (millions(built), encoder_sizes) == (unet, text)


@pytest.mark.parametrize(("family", "pads"), [("sd1", ["<|endoftext|>"]), ("sdxl", ["<|endoftext|>", "!"])])
def test_shipped_configs_carry_working_tokenizers(tmp_path, family, pads):
    """The config folder's tokenizers load offline and tokenize like CLIP, padding as the family does."""
    from transformers import CLIPTokenizer

    folder = models.write_family_config(Family(family, "epsilon", family), tmp_path / family)
    for name, pad in zip(("tokenizer", "tokenizer_2"), pads, strict=False):
        tokenizer = CLIPTokenizer.from_pretrained(folder / name, local_files_only=True)
        assert tokenizer("a photo of a dog").input_ids == [49406, 320, 1125, 539, 320, 1929, 49407]
        assert tokenizer.pad_token == pad and tokenizer.model_max_length == 77


def test_an_sd2_config_takes_the_files_prediction_type(tmp_path):
    """The SD 2.x config folder's scheduler predicts what detection found in the file."""
    import json

    folder = models.write_family_config(Family("sd2", "epsilon", "x"), tmp_path / "sd2")
    assert json.loads((folder / "scheduler" / "scheduler_config.json").read_text())["prediction_type"] == "epsilon"


def test_a_single_file_the_shipped_configs_do_not_describe_says_what_to_set(single_file):
    """The tiny file read with SD 1.5's shipped configs (no network) fails with advice, not a hub lookup."""
    from trainer.errors import ModelNotFound

    with pytest.raises(ModelNotFound, match="trainer.single_file_config") as caught:
        models.load_pipeline(str(single_file), models.pick_runtime("cpu"))
    assert "expected shape" in str(caught.value)  # it got as far as the weights: the configs were found offline


def test_a_pickled_ckpt_is_recognised_from_its_keys(single_file, tmp_path):
    """A .ckpt file (a pickled state_dict) has its family read by the trainer, which has torch."""
    import torch
    from safetensors.torch import load_file

    ckpt = tmp_path / "tiny.ckpt"
    torch.save({"state_dict": load_file(str(single_file))}, ckpt)
    assert models.single_file_family(ckpt).name == "sd1"
