"""The class images (the prior) a subject was trained beside, and how varied they are.

Prior preservation trains every subject beside the base model's own pictures of "a photo of a
<class>". Whatever the base model believes a "person" or a "doctor" looks like is in those pictures,
and training pulls the subject's class towards them. DIV over the class images (the paper's diversity
metric, `metrics.div_score`) says how varied that prior is: a low value means the class images are
much alike (one age, one look, one setting), and every subject of that class learns beside them.

The images are the training set itself when it is still on disk (the worker's class-image cache,
`<data_dir>/class_images/<key>`), a folder given with --class-images, or else the first class images
made again with the base model: the same prompt, seeds, steps and guidance as the worker uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from trainer.eval import metrics

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass(frozen=True)
class Prior:
    prompt: str  # the class prompt the images were made from
    images: list[Image.Image]
    source: str  # a folder, or "generated with the base model"


def diversity(images: list[Image.Image], dino) -> float:
    """DIV over the class images: mean perceptual distance over every pair (two or more images)."""
    return metrics.div_score(dino.token_maps(images))


def class_prompt(class_noun: str) -> str:
    """The class prompt training used for this class."""
    from trainer.config import TrainConfig

    return TrainConfig(class_noun=class_noun).class_prompt


def from_folder(folder: Path, *, prompt: str, limit: int) -> Prior | None:
    """The first `limit` images of a class-image folder (class image i has seed CLASS_SEED_BASE + i), or None."""
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
    if len(paths) < 2:
        return None
    return Prior(prompt, [Image.open(p).convert("RGB") for p in paths[:limit]], str(folder))


def generate(generator, *, prompt: str, count: int, steps: int, guidance: float, resolution: int) -> Prior:
    """The first `count` class images made again: the base model alone, the worker's seeds."""
    from trainer.data import CLASS_SEED_BASE

    images = generator.generate(prompt, [], n=count, seed=CLASS_SEED_BASE, steps=steps, guidance=guidance,
                                resolution=resolution).images
    return Prior(prompt, images, "generated with the base model")


def cached_folder(train_config_json: str, pipe, data_dir: Path) -> Path | None:
    """The worker's class-image folder for a training job's resolved config, if it is still on disk.

    The key is computed as `Worker._class_images` computes it (trainer/worker.py).
    """
    from trainer import data, models
    from trainer.config import TrainConfig

    cfg = TrainConfig.from_json(train_config_json)
    if not cfg.prior_preservation:
        return None
    model = models.fingerprint(cfg.base_model, dtype=pipe.unet.dtype, cache_path=models.weight_hash_cache(data_dir))
    key = data.class_cache_key(model=model, prompt=cfg.class_prompt,
                               resolution=cfg.resolution, steps=cfg.sample_steps, guidance=cfg.guidance_scale,
                               count=cfg.class_images, sampler=type(pipe.scheduler).__name__)
    folder = Path(data_dir) / "class_images" / key
    return folder if folder.is_dir() else None
