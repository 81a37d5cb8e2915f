"""Image generation with trained subjects: the base pipeline stays loaded, adapters come and go by name.

Adapters are kept in a small LRU cache inside the one pipeline (`set_adapters` picks the one or two
a request needs), so a request never reloads base weights. Every image has its own seed, recorded,
so any single image can be made again. A prompt a text encoder cannot read whole (over 77
tokens with the start and end marks; SDXL's two tokenizers are both asked) is refused, never cut.
The same calls drive StableDiffusionPipeline and StableDiffusionXLPipeline: SDXL's pipeline adds its
size and crop conditioning itself at inference. Every file written with `marks` says it
is AI-generated (storage/provenance.py) and, when asked, carries the invisible watermark.
"""

from __future__ import annotations

import io
import logging
import secrets
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from storage import provenance
from storage.provenance import Marks
from trainer import lora
from trainer.errors import InputError, PromptTooLong

log = logging.getLogger(__name__)

MAX_PNG_BYTES = 10 * 1024 * 1024  # Discord's upload limit without boosts
RENDER_BATCH = 8  # images per pipeline call


def check_prompt(tokenizer, prompt: str) -> int:
    """The prompt's token count with start and end marks; PromptTooLong if the model cannot read it all."""
    n = len(tokenizer(prompt, truncation=False).input_ids)
    if n > tokenizer.model_max_length:
        raise PromptTooLong(n - 2, tokenizer.model_max_length - 2)
    return n


def check_prompt_fits(pipe, prompt: str) -> int:
    """`check_prompt` with every tokenizer of the pipeline (SDXL has two); the longest count."""
    tokenizers = [t for t in (pipe.tokenizer, getattr(pipe, "tokenizer_2", None)) if t is not None]
    return max(check_prompt(tokenizer, prompt) for tokenizer in tokenizers)


@torch.no_grad()
def render(pipe, prompts: list[str], *, seeds: list[int] | tuple[int, ...], steps: int, guidance: float,
           resolution: int, batch_size: int = RENDER_BATCH,
           should_stop: Callable[[], bool] | None = None) -> list[Image.Image]:
    """One image per (prompt, seed), prompt-major: row i of a grid with len(seeds) columns is prompt i.

    `should_stop` is asked before each batch and after each denoising step; when it says so, the
    sampler skips its remaining steps and InterruptedError is raised.
    """
    jobs = [(p, s) for p in prompts for s in seeds]
    images: list[Image.Image] = []
    device = pipe.unet.device
    step_end = None
    if should_stop is not None:
        def step_end(pipe, step, timestep, tensors):
            if should_stop():
                pipe._interrupt = True  # diffusers' pipelines skip the remaining steps when this is set
            return tensors

    for start in range(0, len(jobs), batch_size):
        if should_stop is not None and should_stop():
            raise InterruptedError(f"stopped after {len(images)} of {len(jobs)} images")
        batch = jobs[start:start + batch_size]
        out = pipe(prompt=[p for p, _ in batch], num_inference_steps=steps, guidance_scale=guidance,
                   height=resolution, width=resolution,
                   generator=[torch.Generator(device).manual_seed(s) for _, s in batch],
                   callback_on_step_end=step_end)
        if step_end is not None and pipe.interrupt:  # the batch was cut short: its images are half-denoised
            raise InterruptedError(f"stopped while making image {len(images) + 1} of {len(jobs)}")
        images.extend(out.images)
    return images


def make_grid(images: list[Image.Image], cols: int) -> Image.Image:
    w, h = images[0].size
    rows = -(-len(images) // cols)
    grid = Image.new("RGB", (cols * w, rows * h), "white")
    for i, im in enumerate(images):
        grid.paste(im, ((i % cols) * w, (i // cols) * h))
    return grid


def png_bytes(image: Image.Image, max_bytes: int = MAX_PNG_BYTES, *, marks: Marks | None = None) -> bytes:
    """PNG encoding, scaled down by steps until it is under max_bytes; every try carries `marks`.

    The watermark goes into the image actually encoded (after any scaling, which would blur it away).
    """
    while True:
        buf = io.BytesIO()
        encoded, options = _marked(image, marks)
        encoded.save(buf, format="PNG", optimize=False, compress_level=6, **options)
        if buf.tell() <= max_bytes or min(image.size) < 64:
            return buf.getvalue()
        image = image.resize((int(image.width * 0.75), int(image.height * 0.75)), Image.Resampling.LANCZOS)


def _marked(image: Image.Image, marks: Marks | None) -> tuple[Image.Image, dict]:
    """The image to encode (watermarked when asked and it fits) and the save options with its metadata."""
    if marks is None:
        return image, {}
    watermarked = False
    if marks.watermark:
        from trainer import watermark

        if watermark.fits(*image.size):
            image, watermarked = watermark.embed(image), True
        else:
            log.info("a %dx%d image is too small to carry the watermark; it is marked in metadata only",
                     *image.size)
    return image, {"pnginfo": provenance.png_info(marks, watermarked=watermarked)}


def save_png(image: Image.Image, path: Path, max_bytes: int = MAX_PNG_BYTES, *, marks: Marks | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(png_bytes(image, max_bytes, marks=marks))
    tmp.replace(path)
    return path


def save_grid(images: list[Image.Image], *, cols: int, path: Path, max_bytes: int = MAX_PNG_BYTES,
              marks: Marks | None = None) -> Path:
    """The images as one grid PNG; `marks` (seed None: a grid has several) describe the grid as a whole."""
    return save_png(make_grid(images, cols), path, max_bytes, marks=marks)


@dataclass(frozen=True)
class Generated:
    images: list[Image.Image]
    seeds: list[int]  # seeds[i] alone remakes images[i]
    prompt: str


class ImageGenerator:
    """A loaded base pipeline plus an LRU cache of subject adapters loaded into it."""

    def __init__(self, pipe, *, cache_size: int = 4):
        self.pipe = pipe
        self.cache_size = cache_size
        self._loaded: OrderedDict[str, Path] = OrderedDict()  # adapter name -> folder, oldest first

    @property
    def loaded(self) -> list[str]:
        return list(self._loaded)

    def use(self, adapters: list[tuple[str, Path]], weights: list[float] | None = None) -> None:
        """Make exactly these (name, folder) adapters active, loading missing ones and evicting old ones."""
        names = [name for name, _ in adapters]
        if len(set(names)) != len(names):
            raise InputError("The same subject was named twice: name each subject once.")
        for name, folder in adapters:
            if name in self._loaded:
                self._loaded.move_to_end(name)
                continue
            lora.load_adapter(self.pipe, folder, name)
            self._loaded[name] = Path(folder)
            log.info("loaded adapter %s from %s", name, folder)
        for old in [n for n in self._loaded if n not in names][:max(0, len(self._loaded) - self.cache_size)]:
            self.pipe.delete_adapters(old)
            del self._loaded[old]
            log.info("evicted adapter %s", old)
        if not self._loaded:
            return
        if names:
            self.pipe.enable_lora()
            self.pipe.set_adapters(names, adapter_weights=weights or [1.0] * len(names))
        else:
            self.pipe.disable_lora()

    def unload_all(self) -> None:
        """Remove every adapter, leaving the plain base model (before training on the same pipeline)."""
        if self._loaded:
            self.pipe.delete_adapters(list(self._loaded))
            self._loaded.clear()

    def generate(self, prompt: str, adapters: list[tuple[str, Path]], *, n: int = 4, seed: int | None = None,
                 steps: int = 25, guidance: float = 7.5, resolution: int = 512,
                 should_stop: Callable[[], bool] | None = None) -> Generated:
        """n images of `prompt` with the given adapters active; seed None picks a random one.

        The n images are denoised together in one batch (at most RENDER_BATCH), as before; a cancel or
        revoke (`should_stop()`, asked before the batch and between sampler steps) raises
        InterruptedError within one step instead of after all n images are made.
        """
        if not 1 <= n <= 16:
            raise InputError(f"Ask for 1 to 16 images, not {n}.")
        if not 1 <= steps <= 150:
            raise InputError(f"Use 1 to 150 sampler steps, not {steps}.")
        check_prompt_fits(self.pipe, prompt)
        self.use(adapters)
        base = secrets.randbelow(2**31) if seed is None else seed
        seeds = [base + i for i in range(n)]
        images = render(self.pipe, [prompt], seeds=seeds, steps=steps, guidance=guidance, resolution=resolution,
                        should_stop=should_stop)
        return Generated(images, seeds, prompt)
