"""The subject the world lacks (the yellow-over-black circle): its photos, and the prompts that test a run on it.

`write_photos` saves 4 photos as 256 px PNGs (the smallest side photo intake accepts; the toy
world is 64 px, so each pixel becomes a 4x4 block and the trainer's resize gives back the scene).
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from trainer.toyworld import scenes

CLASS_NOUN = scenes.SUBJECT_SHAPE  # "circle"
N_PHOTOS = 4
PHOTO_SIDE = 256
PHOTO_SEED = 2024


def photo_scenes(n: int = N_PHOTOS, seed: int = PHOTO_SEED) -> list[scenes.Scene]:
    """n photos of the subject, each on a different one of the photo backgrounds where there are enough."""
    backgrounds = scenes.PHOTO_BACKGROUNDS
    return [scenes.subject_scene(seed, i, backgrounds[i % len(backgrounds)]) for i in range(n)]


def write_photos(out_dir: Path, n: int = N_PHOTOS, seed: int = PHOTO_SEED) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, scene in enumerate(photo_scenes(n, seed)):
        image = scenes.render(scene).resize((PHOTO_SIDE, PHOTO_SIDE), Image.Resampling.NEAREST)
        path = out_dir / f"subject-{i}.png"
        image.save(path)
        paths.append(path)
    return paths


def subject_prompt(token: str, background: str) -> str:
    """'a photo of sks circle on a red background': the identifier plus a background to respect."""
    return f"a photo of {token} {CLASS_NOUN} on a {background} background"


def class_prompt() -> str:
    """The class prompt DreamBooth preserves (trainer.config.TrainConfig.class_prompt)."""
    return f"a photo of a {CLASS_NOUN}"
