"""Training data: instance photos, generated class images, and everything precomputed from them.

The VAE encoder and the frozen text encoder give the same answer every step, so they run once:
each image (and its mirror image) is encoded to the latent distribution's mean and std, and
each step draws `mean + std * noise`, which is exactly what re-encoding through the VAE every
step (diffusers' reference script) samples. A step then runs the UNet only, on one fused batch
of instance and class examples.

Caching loses the random crops a per-step data loader would take, so each subject photo is cached
as several views (`crop_views`, trainer.crops_per_photo): the centre crop, and random squares of the
photo scaled up by 1-1.25x, which move over the whole photo (a wide photo's sides too) and vary the
subject's size. Every photo has as many views, so uniform draws keep each photo equally likely.
Class images keep one centre view: there are many of them already.

SDXL also reads, per image, the micro-conditioning it was trained with: the photo's original
size, the top-left corner of the crop actually taken from it (in the resized image; for a mirror
image the mirrored corner) and the target size. Each cached latent keeps its own six `time_ids`,
and the prompts are both text encoders' penultimate states side by side plus the second one's
pooled projection, as in diffusers' train_dreambooth_lora_sdxl.py.

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
VIEW_SCALES = (1.0, 1.25)  # a random view scales the photo's short side to resolution x s, s uniform in this range


@dataclass(frozen=True)
class Crop:
    """One square view of a photo: the photo resized to `resized_size`, then the square at (top, left) cut out.
    `load_image`'s centre crop resizes the short side to the resolution; other views resize it larger."""
    original_size: tuple[int, int]  # (height, width) of the photo as stored
    resized_size: tuple[int, int]  # (height, width) after resizing
    top: int  # the crop's top-left corner in the resized image
    left: int
    resolution: int  # the square's side: SDXL's target size

    def time_ids(self, *, flipped: bool = False) -> list[int]:
        """SDXL's six conditioning numbers: original size, crop top-left, target size (a mirror image's crop
        starts as far from the right edge as the crop from the left)."""
        left = self.resized_size[1] - self.left - self.resolution if flipped else self.left
        return [*self.original_size, self.top, left, self.resolution, self.resolution]


def crop_of(width: int, height: int, resolution: int) -> Crop:
    """The crop `load_image` takes from a width x height image (pure: sizes in, sizes out)."""
    w, h = _resized(width, height, resolution, 1.0)
    return Crop((height, width), (h, w), (h - resolution) // 2, (w - resolution) // 2, resolution)


def _resized(width: int, height: int, resolution: int, scale: float) -> tuple[int, int]:
    """(width, height) with the short side scaled to resolution x scale, never under the resolution."""
    factor = resolution * scale / min(width, height)
    return max(resolution, round(width * factor)), max(resolution, round(height * factor))


def crop_views(width: int, height: int, resolution: int, *, count: int, rng: np.random.Generator) -> list[Crop]:
    """`count` square views of a width x height photo (pure: sizes and a generator in, Crop records out).

    View 0 is `crop_of`'s centre crop. Each other view scales the short side to resolution x s, s uniform in
    VIEW_SCALES, and takes the square at a uniform position in that, along both sides: where the window sits and
    how much of the photo it holds both vary. count 1 draws nothing from `rng`.
    """
    if count < 1:
        raise ValueError(f"a photo needs at least one view, not {count}")
    views = [crop_of(width, height, resolution)]
    for _ in range(count - 1):
        w, h = _resized(width, height, resolution, float(rng.uniform(*VIEW_SCALES)))
        top, left = (int(rng.integers(0, side - resolution + 1)) for side in (h, w))
        views.append(Crop((height, width), (h, w), top, left, resolution))
    return views


def cut(image: Image.Image, crop: Crop) -> Image.Image:
    """The view `crop` describes, cut from `image` (the photo as stored, converted to RGB)."""
    resized = image.resize(crop.resized_size[::-1], Image.Resampling.LANCZOS, reducing_gap=3.0)
    return resized.crop((crop.left, crop.top, crop.left + crop.resolution, crop.top + crop.resolution))


def photo_views(path: str | Path, resolution: int, *, count: int,
                rng: np.random.Generator) -> list[tuple[Image.Image, Crop]]:
    """The photo at `path` as `crop_views` describes it: each view's RGB image and its Crop."""
    with Image.open(path) as im:
        rgb = im.convert("RGB")
    return [(cut(rgb, crop), crop) for crop in crop_views(rgb.width, rgb.height, resolution, count=count, rng=rng)]


def image_crop(path: str | Path, resolution: int) -> Crop:
    """The crop `load_image` takes from the image file at `path` (reads only its header)."""
    with Image.open(path) as im:
        return crop_of(im.width, im.height, resolution)


def time_ids(crops: list[Crop], *, flip: bool) -> torch.Tensor:
    """[N, 6] (or [2N, 6] with the mirror images after the originals, as `encode_images` orders them) floats."""
    rows = [c.time_ids() for c in crops] + ([c.time_ids(flipped=True) for c in crops] if flip else [])
    return torch.tensor(rows, dtype=torch.float32)


def load_image(path: str | Path, resolution: int) -> Image.Image:
    """An RGB image with its short side scaled to `resolution` and the long side centre-cropped."""
    with Image.open(path) as im:
        rgb = im.convert("RGB")
    return cut(rgb, crop_of(rgb.width, rgb.height, resolution))


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
        try:
            for i, image in zip(batch, images, strict=True):
                tmp = partial / f".{i:05d}.{os.getpid()}.tmp.png"  # workers sharing a data dir may race here
                image.save(tmp)
                tmp.replace(partial / f"{i:05d}.png")
        except FileNotFoundError:
            if out_dir.is_dir():  # another worker on this data dir finished the same set and moved the folder
                return out_dir
            raise
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
    time_ids: torch.Tensor | None = None  # [N, 6]: SDXL's size and crop conditioning of each image

    def __len__(self) -> int:
        return self.mean.shape[0]

    def sample(self, n: int, generator: torch.Generator, scaling_factor: float) -> torch.Tensor:
        """n latents, images drawn uniformly with replacement, each a fresh draw from its distribution.
        (Every photo has as many views and mirror images in the pool, so each photo is equally likely.)"""
        return self.draw(n, generator, scaling_factor)[0]

    def draw(self, n: int, generator: torch.Generator,
             scaling_factor: float) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`sample`'s latents and the time ids of the images they were drawn from (None if the pool has none)."""
        idx = torch.randint(len(self), (n,), generator=generator, device=generator.device).to(self.mean.device)
        eps = torch.randn(self.mean[idx].shape, generator=generator, device=generator.device).to(self.mean)
        ids = None if self.time_ids is None else self.time_ids[idx.to(self.time_ids.device)]
        return (self.mean[idx] + self.std[idx] * eps) * scaling_factor, ids

    def to(self, device) -> LatentPool:
        return LatentPool(self.mean.to(device), self.std.to(device),
                          None if self.time_ids is None else self.time_ids.to(device))


@torch.no_grad()
def encode_images(vae, images: torch.Tensor, *, flip: bool, batch_size: int = 8) -> LatentPool:
    """Encode [N, 3, H, W] images in [-1, 1] (and their mirror images when `flip`, after them) to a LatentPool, fp32."""
    n = images.shape[0]
    means, stds = [], []
    # Row i >= n is image i - n mirrored: each batch is built when encoded, so no mirrored copy of every image is held.
    for rows in torch.arange(2 * n if flip else n).split(batch_size):
        chunk = images[rows % n]
        chunk[rows >= n] = chunk[rows >= n].flip(-1)
        dist = vae.encode(chunk.to(vae.device, vae.dtype)).latent_dist
        means.append(dist.mean.float())
        stds.append(dist.std.float())
    # Contiguous, as a pool loaded from disk is: the VAE may hand back channels-last tensors, and a layout that differs
    # between a job's first run (fresh class latents) and its resume (loaded ones) changes the UNet's float rounding.
    return LatentPool(torch.cat(means).contiguous(), torch.cat(stds).contiguous())


def save_pool(pool: LatentPool, path: Path) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(path.name + ".tmp")
    tensors = {"mean": pool.mean, "std": pool.std}
    if pool.time_ids is not None:
        tensors["time_ids"] = pool.time_ids
    save_file({k: v.cpu().contiguous() for k, v in tensors.items()}, str(tmp))
    os.replace(tmp, path)


def load_pool(path: Path) -> LatentPool:
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    return LatentPool(tensors["mean"], tensors["std"], tensors.get("time_ids"))


def class_latents(vae, folder: Path, *, resolution: int, flip: bool) -> LatentPool:
    """The class images' LatentPool, cached on disk beside them (computed by the first job to need it)."""
    cached = folder / (LATENTS_FILE if flip else "latents-noflip.safetensors")
    paths = class_image_paths(folder)
    if cached.exists():
        pool = load_pool(cached)
        if pool.time_ids is None:  # cached before time ids were kept (left as it is: its hash is recorded)
            pool.time_ids = time_ids([image_crop(p, resolution) for p in paths], flip=flip)
        return pool
    pool = encode_images(vae, to_tensor([load_image(p, resolution) for p in paths]), flip=flip)
    pool.time_ids = time_ids([image_crop(p, resolution) for p in paths], flip=flip)
    save_pool(pool, cached)
    return pool


@torch.no_grad()
def encode_prompt(pipe, prompt: str) -> torch.Tensor:
    """[1, 77, D] text-encoder hidden states for `prompt` (the frozen-text-encoder case; SD 1.x/2.x)."""
    ids = token_ids(pipe.tokenizer, prompt).to(pipe.text_encoder.device)
    return pipe.text_encoder(ids)[0]


def sdxl_text_states(pipe, ids: torch.Tensor, ids_2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """SDXL's prompt conditioning for [B, 77] token ids of each tokenizer: ([B, 77, D1 + D2], [B, P]).

    Both text encoders' penultimate hidden states, side by side, and the second encoder's pooled
    projection, as diffusers' StableDiffusionXLPipeline and train_dreambooth_lora_sdxl.py compute them.
    """
    out_1 = pipe.text_encoder(ids.to(pipe.text_encoder.device), output_hidden_states=True)
    out_2 = pipe.text_encoder_2(ids_2.to(pipe.text_encoder_2.device), output_hidden_states=True)
    return torch.cat([out_1.hidden_states[-2], out_2.hidden_states[-2]], dim=-1), out_2.text_embeds


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
    # SDXL only (None otherwise): the second tokenizer's ids, and the pooled projections when frozen
    instance_ids_2: torch.Tensor | None = None  # [1, 77]
    class_ids_2: torch.Tensor | None = None
    instance_pooled: torch.Tensor | None = None  # [1, P]
    class_pooled: torch.Tensor | None = None


def prepare(pipe, *, instance_paths: list[Path], class_dir: Path | None, instance_prompt: str,
            class_prompt: str, resolution: int, flip: bool, text_encoder_frozen: bool, crops_per_photo: int = 1,
            seed: int = 0) -> TrainingData:
    """Encode the photos (`crops_per_photo` views of each, random ones drawn from `seed`), the class images and the
    prompts once, on the pipeline's device. The instance pool holds each photo's views in turn, then their mirror
    images in the same order when `flip`."""
    device = pipe.unet.device
    rng = np.random.default_rng(seed % 2**64)
    views = [view for p in instance_paths for view in photo_views(p, resolution, count=crops_per_photo, rng=rng)]
    instance = encode_images(pipe.vae, to_tensor([image for image, _ in views]), flip=flip)
    instance.time_ids = time_ids([crop for _, crop in views], flip=flip)
    instance = instance.to(device)
    classes = class_latents(pipe.vae, class_dir, resolution=resolution, flip=flip).to(device) if class_dir else None
    ids = token_ids(pipe.tokenizer, instance_prompt), token_ids(pipe.tokenizer, class_prompt)
    if getattr(pipe, "text_encoder_2", None) is not None:
        ids_2 = token_ids(pipe.tokenizer_2, instance_prompt), token_ids(pipe.tokenizer_2, class_prompt)
        states = [(None, None), (None, None)]
        if text_encoder_frozen:
            with torch.no_grad():
                states = [sdxl_text_states(pipe, a, b) for a, b in zip(ids, ids_2, strict=True)]
        return TrainingData(instance, classes, ids[0].to(device), ids[1].to(device), states[0][0], states[1][0],
                            ids_2[0].to(device), ids_2[1].to(device), states[0][1], states[1][1])
    embs = (encode_prompt(pipe, instance_prompt), encode_prompt(pipe, class_prompt)) if text_encoder_frozen \
        else (None, None)
    return TrainingData(instance, classes, ids[0].to(device), ids[1].to(device), *embs)
