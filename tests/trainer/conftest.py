"""Trainer fixtures: a tiny seeded Stable Diffusion model (built once), real photos, a small config."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # never touch the network, whatever the caller's environment says
os.environ["TRANSFORMERS_OFFLINE"] = "1"
# One intra-op thread: on a small shared CPU, two threads spin-waiting on each other run twice as slowly.
os.environ["OMP_NUM_THREADS"] = "1"

from storage import lifecycle  # noqa: E402
from storage import photos as storage_photos  # noqa: E402
from storage.config import Config, Preset, QueueConfig, TrainerSettings  # noqa: E402

PHOTOS = ("chelsea", "astronaut", "coffee")  # real photographs shipped with scikit-image


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny SD 1.x-shaped model in the diffusers layout, made once through the CLI command."""
    import torch

    from trainer.cli import build_parser

    torch.set_num_threads(1)  # in case torch was imported before this conftest set OMP_NUM_THREADS
    out = tmp_path_factory.mktemp("models") / "tiny"
    args = build_parser().parse_args(["make-tiny-model", str(out), "--seed", "0"])
    assert args.func(args, Config()) == 0
    return out


@pytest.fixture(scope="session")
def tiny_sdxl_model(tmp_path_factory) -> Path:
    """A tiny SDXL base-shaped model in the diffusers layout, made once through the CLI command."""
    import torch

    from trainer.cli import build_parser

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("models") / "tiny-sdxl"
    args = build_parser().parse_args(["make-tiny-model", str(out), "--seed", "0", "--arch", "sdxl"])
    assert args.func(args, Config()) == 0
    return out


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory) -> Path:
    """Three real photos as PNG files."""
    import skimage.data
    from PIL import Image

    out = tmp_path_factory.mktemp("photos")
    for name in PHOTOS:
        Image.fromarray(getattr(skimage.data, name)()).save(out / f"{name}.png")
    return out


@pytest.fixture
def photo_paths(photo_dir) -> list[Path]:
    return [photo_dir / f"{name}.png" for name in PHOTOS]


@pytest.fixture
def pipe(tiny_model):
    """The tiny model loaded the way the worker loads a base model (fresh per test: adapters mutate it)."""
    from trainer import models

    return models.load_pipeline(str(tiny_model), models.pick_runtime("cpu"))


@pytest.fixture
def train_cfg(tiny_model):
    """A TrainConfig small enough to train in a second or two on a CPU."""
    from trainer.config import TrainConfig

    return TrainConfig(base_model=str(tiny_model), steps=4, rank=4, alpha=4.0, resolution=64, class_images=4,
                       checkpoint_every=2, keep_checkpoints=1, sample_steps=2, warmup_steps=0, device="cpu",
                       mixed_precision="no", eval_prompts=("{subject} as a superhero",), sample_seeds=(0,),
                       grid_every=2, grid_steps=0, final_grid_steps=0)


@pytest.fixture
def app_cfg(tiny_model, tmp_path) -> Config:
    """The whole config pointed at the tiny model, a tmp data dir and fast presets and leases."""
    return make_app_cfg(tiny_model, tmp_path / "data")


def make_app_cfg(tiny_model: Path, data_dir: Path, *, lease_seconds: int = 30) -> Config:
    base = Config()
    presets = {"quick": Preset(steps=4, learning_rate=1e-3, rank=4, alpha=4.0, train_text_encoder=False),
               "faces": Preset(steps=2, learning_rate=1e-3, rank=4, alpha=8.0, train_text_encoder=True)}
    trainer = TrainerSettings(base_model=str(tiny_model), device="cpu", mixed_precision="no", resolution=64,
                              default_preset="quick", class_images=4, checkpoint_every=2, keep_checkpoints=2,
                              sample_steps=2, poll_seconds=0.05, adapter_cache=2, presets=presets,
                              grid_every=2, grid_steps=0, final_grid_steps=0)  # a grid at every checkpoint
    storage = replace(base.storage, data_dir=data_dir,
                      queue=QueueConfig(lease_seconds=lease_seconds, backoff_base_seconds=0.0, backoff_max_seconds=0.0))
    return replace(base, storage=storage, trainer=trainer)


async def add_subject(db, app_cfg: Config, photo_paths: list[Path], *, name: str = "rex", class_noun: str = "dog",
                      owner_id: int = 1):
    """A subject with the photos cleaned and stored as the bot would, and its owner's consent (not queued)."""
    cleaned = [storage_photos.inspect_photo(path.read_bytes(), filename=path.name, content_type=None,
                                            limits=app_cfg.storage.photos) for path in photo_paths]
    subject = await lifecycle.create_draft(db, owner_id=owner_id, guild_id=None, channel_id=None, name=name,
                                           class_noun=class_noun, preset=None, photos=cleaned,
                                           data_dir=Path(app_cfg.storage.data_dir))
    queued = await lifecycle.confirm(db, subject_id=subject.id, user_id=owner_id, queue=app_cfg.storage.queue,
                                     review_required=True)
    return queued.subject


def write_checker(folder: Path, *, threshold: float) -> Path:
    """A standalone tiny safety checker folder (laid out as CompVis/stable-diffusion-safety-checker is) whose every
    concept threshold is `threshold`: -1.0 flags every image, since a cosine similarity is never below -1."""
    import torch

    from trainer.tiny_model import build_tiny_safety_checker

    checker, processor = build_tiny_safety_checker()
    with torch.no_grad():
        checker.concept_embeds_weights.fill_(threshold)
    checker.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def flags_everything(tmp_path_factory) -> Path:
    """A safety checker folder that flags every image (for trainer.safety_checker)."""
    return write_checker(tmp_path_factory.mktemp("checkers") / "flags-everything", threshold=-1.0)
