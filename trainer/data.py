"""Training data: instance photos, generated class images, and everything precomputed from them.

The VAE encoder and the frozen text encoder give the same answer every step, so they run once:
each image (and its mirror image) is encoded to the latent distribution's mean and std, and
each step draws `mean + std * noise`, which is exactly what re-encoding through the VAE every
step (diffusers' reference script) samples. A step then runs the UNet only, on one fused batch
of instance and class examples.

Class images depend only on (model, class prompt, resolution, sampler steps, guidance, count),
so one set serves every job and every user that asks for the same; `class_cache_key` names it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

log = logging.getLogger(__name__)

CLASS_SEED_BASE = 1_000_000  # class image i uses seed CLASS_SEED_BASE + i
CLASS_CACHE_VERSION = 1  # bump when the generation recipe changes, so old sets are not reused
LATENTS_FILE = "latents.safetensors"


def load_image(path: str | Path, resolution: int) -> Image.Image:
    """An RGB image with its short side scaled to `resolution` and the long side centre-cropped."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        scale = resolution / min(im.size)
        size = (max(resolution, round(im.width * scale)), max(resolution, round(im.height * scale)))
        im = im.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    left, top = (im.width - resolution) // 2, (im.height - resolution) // 2
    return im.crop((left, top, left + resolution, top + resolution))


def to_tensor(images: list[Image.Image]) -> torch.Tensor:
    """[N, 3, H, W] in [-1, 1], the VAE's input range."""
    arrays = np.stack([np.asarray(im, dtype=np.float32) for im in images])
    return torch.from_numpy(arrays).permute(0, 3, 1, 2) / 127.5 - 1.0


def class_cache_key(*, model: str, prompt: str, resolution: int, steps: int, guidance: float, count: int,
                    sampler: str) -> str:
    """The name of a reusable class-image set: a hash of everything that decides its pixels."""
    recipe = {"v": CLASS_CACHE_VERSION, "model": model, "prompt": prompt, "resolution": resolution,
              "steps": steps, "guidance": guidance, "count": count, "sampler": sampler, "seed": CLASS_SEED_BASE}
    return "class-" + hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:32]


def generate_class_images(pipe, out_dir: Path, *, prompt: str, count: int, resolution: int, steps: int,
                          guidance: float, batch_size: int = 8,
                          progress: Callable[[int, int], None] | None = None,
                          should_stop: Callable[[], bool] = lambda: False) -> Path:
    """Render `count` class images with fixed seeds into `out_dir` (made atomically: done means complete).

    Work goes into `out_dir.partial/`, one file per image, so a run that is stopped or killed
    resumes where it left off; the folder is renamed to `out_dir` only when every image exists.
    Returns `out_dir`, or raises InterruptedError if `should_stop()` said so between batches.
    """
    if out_dir.is_dir():
        return out_dir
    partial = out_dir.with_name(out_dir.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    todo = [i for i in range(count) if not (partial / f"{i:05d}.png").exists()]
    for start in range(0, len(todo), batch_size):
        if should_stop():
            raise InterruptedError("stopped while generating class images")
        batch = todo[start:start + batch_size]
        generators = [torch.Generator(pipe.unet.device).manual_seed(CLASS_SEED_BASE + i) for i in batch]
        images = pipe(prompt=[prompt] * len(batch), num_inference_steps=steps, guidance_scale=guidance,
                      height=resolution, width=resolution, generator=generators).images
        for i, image in zip(batch, images, strict=True):
            tmp = partial / f".{i:05d}.tmp.png"
            image.save(tmp)
            tmp.replace(partial / f"{i:05d}.png")
        if progress:
            progress(count - len(todo) + start + len(batch), count)
    try:
        partial.rename(out_dir)
    except OSError:  # another worker finished the same set first; theirs is identical
        if not out_dir.is_dir():
            raise
        shutil.rmtree(partial, ignore_errors=True)
    return out_dir


def class_image_paths(folder: Path) -> list[Path]:
    return sorted(folder.glob("[0-9]*.png"))


@dataclass
class LatentPool:
    """Latent distributions of a set of images (and their mirror images): draw a batch with `sample`."""
    mean: torch.Tensor  # [N, 4, h, w]
    std: torch.Tensor  # [N, 4, h, w]

    def __len__(self) -> int:
        return self.mean.shape[0]

    def sample(self, n: int, generator: torch.Generator, scaling_factor: float) -> torch.Tensor:
        """n latents, images drawn uniformly with replacement, each a fresh draw from its distribution."""
        idx = torch.randint(len(self), (n,), generator=generator, device=generator.device).to(self.mean.device)
        eps = torch.randn(self.mean[idx].shape, generator=generator, device=generator.device).to(self.mean)
        return (self.mean[idx] + self.std[idx] * eps) * scaling_factor

    def to(self, device) -> LatentPool:
        return LatentPool(self.mean.to(device), self.std.to(device))


@torch.no_grad()
def encode_images(vae, images: torch.Tensor, *, flip: bool, batch_size: int = 8) -> LatentPool:
    """Encode [N, 3, H, W] images in [-1, 1] (and their mirror images when `flip`) to a LatentPool, fp32."""
    if flip:
        images = torch.cat([images, images.flip(-1)])
    means, stds = [], []
    for chunk in images.split(batch_size):
        dist = vae.encode(chunk.to(vae.device, vae.dtype)).latent_dist
        means.append(dist.mean.float())
        stds.append(dist.std.float())
    return LatentPool(torch.cat(means), torch.cat(stds))


def save_pool(pool: LatentPool, path: Path) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".tmp")
    save_file({"mean": pool.mean.cpu().contiguous(), "std": pool.std.cpu().contiguous()}, str(tmp))
    os.replace(tmp, path)


def load_pool(path: Path) -> LatentPool:
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    return LatentPool(tensors["mean"], tensors["std"])


def class_latents(vae, folder: Path, *, resolution: int, flip: bool) -> LatentPool:
    """The class images' LatentPool, cached on disk beside them (computed by the first job to need it)."""
    cached = folder / (LATENTS_FILE if flip else "latents-noflip.safetensors")
    if cached.exists():
        return load_pool(cached)
    images = to_tensor([load_image(p, resolution) for p in class_image_paths(folder)])
    pool = encode_images(vae, images, flip=flip)
    save_pool(pool, cached)
    return pool


@torch.no_grad()
def encode_prompt(pipe, prompt: str) -> torch.Tensor:
    """[1, 77, D] text-encoder hidden states for `prompt` (the frozen-text-encoder case)."""
    ids = token_ids(pipe.tokenizer, prompt).to(pipe.text_encoder.device)
    return pipe.text_encoder(ids)[0]


def token_ids(tokenizer, prompt: str) -> torch.Tensor:
    """[1, 77] token ids, padded to the model's length."""
    return tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                     return_tensors="pt").input_ids


@dataclass
class TrainingData:
    """Everything a step reads: latent pools, and the prompts as ids and (when frozen) hidden states."""
    instance: LatentPool
    classes: LatentPool | None
    instance_ids: torch.Tensor  # [1, 77]
    class_ids: torch.Tensor  # [1, 77]
    instance_emb: torch.Tensor | None  # [1, 77, D]; None when the text encoder is trained
    class_emb: torch.Tensor | None


def prepare(pipe, *, instance_paths: list[Path], class_dir: Path | None, instance_prompt: str,
            class_prompt: str, resolution: int, flip: bool, text_encoder_frozen: bool) -> TrainingData:
    """Encode the photos, the class images and the prompts once, on the pipeline's device."""
    device = pipe.unet.device
    photos = to_tensor([load_image(p, resolution) for p in instance_paths])
    instance = encode_images(pipe.vae, photos, flip=flip).to(device)
    classes = class_latents(pipe.vae, class_dir, resolution=resolution, flip=flip).to(device) if class_dir else None
    ids = token_ids(pipe.tokenizer, instance_prompt), token_ids(pipe.tokenizer, class_prompt)
    embs = (encode_prompt(pipe, instance_prompt), encode_prompt(pipe, class_prompt)) if text_encoder_frozen \
        else (None, None)
    return TrainingData(instance, classes, ids[0].to(device), ids[1].to(device), *embs)
