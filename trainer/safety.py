"""The image safety checker: every generated image and every sample-grid tile passes it before it is saved.

It is the standard Stable Diffusion safety checker: diffusers' `StableDiffusionSafetyChecker` (a CLIP
vision tower whose image embedding is compared with 17 concept embeddings, each with its own
threshold), fed by transformers' `CLIPImageProcessor`. It runs on the final PIL images rather than
inside the pipeline, so generated images and training grids go through one path and the pipeline
stays built with `safety_checker=None`.

`trainer.safety_checker` chooses it: "auto" (the base model's own `safety_checker/` and
`feature_extractor/` when it ships them, else CompVis/stable-diffusion-safety-checker), a hub id or a
local folder, or "off". Hub ids are read from the local Hugging Face cache only: `dreambot
fetch-model` puts them there. What a flagged image becomes is the guild's policy (`screen_images`,
`screen_tiles`): under "block" it is never saved; under "spoiler-in-age-restricted" it is kept and
marked, and the bot decides per channel.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from storage.guilds import NSFW_MODES
from trainer.errors import CannotStart, ModelNotFound

log = logging.getLogger(__name__)

STANDARD = "CompVis/stable-diffusion-safety-checker"  # what SD 1.x pipelines ship, also on its own
AUTO, OFF = "auto", "off"
BLOCK, SPOILER = NSFW_MODES  # the guild's nsfw policies, owned by storage.guilds
CHECK_BATCH = 8  # images per checker forward pass
GREY = (128, 128, 128)  # what a withheld grid tile becomes


class SafetyCheckerUnavailable(CannotStart):
    """The configured safety checker cannot be loaded: the worker refuses to run without it."""

    def __init__(self, where: str, reason: str, *, hub_id: str | None = None):
        fix = (f"Run `dreambot fetch-model {hub_id}` to download it" if hub_id else
               "Run `dreambot fetch-model` for the base model to download it again, or name a checker in "
               "trainer.safety_checker")
        super().__init__(f"the image safety checker could not be loaded from {where}: {reason.rstrip('.')}. {fix}, "
                         "or set trainer.safety_checker = \"off\" in config.toml to run without one (the bot then "
                         "says so in /mod policy).")


class SafetyChecker:
    """A loaded checker: `flags(images)` says, per image, whether it shows a flagged concept."""

    def __init__(self, model, processor, *, device: str = "cpu", dtype=None, source: str = ""):
        self.model, self.processor = model, processor
        self.device, self.dtype, self.source = device, dtype or model.dtype, source

    def flags(self, images: Sequence[Image.Image]) -> list[bool]:
        """True for each image the checker flags, in order; batched, on the worker's device and dtype."""
        import numpy as np

        out: list[bool] = []
        for start in range(0, len(images), CHECK_BATCH):
            batch = [im.convert("RGB") for im in images[start:start + CHECK_BATCH]]
            pixels = self.processor(images=batch, return_tensors="pt").pixel_values
            # The checker's forward blanks flagged entries of `images`; it is given placeholders, since the
            # caller decides what a flagged image becomes.
            _, flagged = self.model(clip_input=pixels.to(self.device, self.dtype),
                                    images=np.zeros((len(batch), 1), dtype=np.float32))
            out.extend(bool(f) for f in flagged)
        return out


def load(setting: str, base_model: str, runtime) -> SafetyChecker | None:
    """The checker `setting` names, on the runtime's device and dtype; None only for "off".

    SafetyCheckerUnavailable (whose message says what to do) when it cannot be loaded offline.
    """
    if setting == OFF:
        return None
    model_dir, processor_dir = _locate(setting, base_model)
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPImageProcessor

    from trainer.models import weights_variant

    # Its forward warns that "a black image will be returned instead" on every flag; here nothing is
    # blanked (the policy decides), and the worker logs its own line.
    logging.getLogger(StableDiffusionSafetyChecker.__module__).setLevel(logging.ERROR)
    try:
        model = StableDiffusionSafetyChecker.from_pretrained(
            model_dir, variant=weights_variant(model_dir), dtype=runtime.dtype, local_files_only=True)
        processor = CLIPImageProcessor.from_pretrained(processor_dir, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise SafetyCheckerUnavailable(str(model_dir), f"{type(exc).__name__}: {exc}") from exc
    model.requires_grad_(False)
    model.eval()
    log.info("safety checker loaded from %s", model_dir)
    return SafetyChecker(model.to(runtime.device), processor, device=runtime.device, dtype=runtime.dtype,
                         source=str(model_dir))


def _locate(setting: str, base_model: str) -> tuple[Path, Path]:
    """(checker folder, image-processor folder) for the setting, all on this machine."""
    if setting == AUTO:
        try:
            own = _pipeline_checker(_local(base_model))
        except ModelNotFound:
            own = None  # a single-file or uncached base model: the standard checker still may be there
        if own is not None:
            return own
        setting = STANDARD
    root = _local(setting, checker=True)
    return _pipeline_checker(root) or (root, root)


def _pipeline_checker(root: Path) -> tuple[Path, Path] | None:
    """A pipeline folder's own safety_checker/ and feature_extractor/, when it ships both."""
    model, processor = root / "safety_checker", root / "feature_extractor"
    if (model / "config.json").is_file() and (processor / "preprocessor_config.json").is_file():
        return model, processor
    return None


def _local(source: str, *, checker: bool = False) -> Path:
    """A folder as named, or a hub id's snapshot in the local cache."""
    from trainer import models

    if Path(source).expanduser().is_dir():
        return Path(source).expanduser()
    hub_id = None
    try:
        if models.source_kind(source) != "hub":
            raise ModelNotFound(f"{source} is a single file, which ships no safety checker")
        hub_id = source
        return models.local_folder(source)
    except ModelNotFound as exc:
        if checker:
            raise SafetyCheckerUnavailable(source, str(exc), hub_id=hub_id) from exc
        raise


# --- what a flag does, by the guild's policy (pure functions) ----------------------------------------

@dataclass(frozen=True)
class Screened:
    """Generated images after the check: which to save, whether each saved one is flagged, how many were not."""
    keep: tuple[int, ...]  # indices into the generated images, in order
    flagged: tuple[bool, ...]  # flagged[i] belongs to keep[i]
    withheld: int  # flagged images dropped before saving


def screen_images(flags: Sequence[bool], mode: str) -> Screened:
    """Under "block" flagged images are dropped; under "spoiler-in-age-restricted" kept and marked."""
    _check_mode(mode)
    if mode == BLOCK:
        keep = tuple(i for i, f in enumerate(flags) if not f)
        return Screened(keep, (False,) * len(keep), len(flags) - len(keep))
    return Screened(tuple(range(len(flags))), tuple(bool(f) for f in flags), 0)


@dataclass(frozen=True)
class ScreenedTiles:
    """A sample grid's tiles after the check."""
    tiles: list[Image.Image]
    nsfw: bool  # a flagged tile is in the grid (only under "spoiler-in-age-restricted")
    withheld: int  # flagged tiles replaced by plain grey ones (under "block")
    flagged: int = 0  # tiles the checker flagged, withheld or not


def screen_tiles(tiles: Sequence[Image.Image], flags: Sequence[bool], mode: str) -> ScreenedTiles:
    """Under "block" a flagged tile becomes a plain grey tile; under "spoiler-..." it stays and marks the grid."""
    _check_mode(mode)
    if mode == BLOCK:
        out = [Image.new("RGB", t.size, GREY) if f else t for t, f in zip(tiles, flags, strict=True)]
        return ScreenedTiles(out, False, sum(map(bool, flags)), sum(map(bool, flags)))
    return ScreenedTiles(list(tiles), any(flags), 0, sum(map(bool, flags)))


def _check_mode(mode: str) -> None:
    if mode not in (BLOCK, SPOILER):
        raise ValueError(f"unknown nsfw policy {mode!r}: {BLOCK} or {SPOILER}")


def check(checker: SafetyChecker | None, images: Sequence[Image.Image]) -> list[bool]:
    """The checker's flags; with the checker off (None), none."""
    return checker.flags(images) if checker is not None else [False] * len(images)


@dataclass(frozen=True)
class TileCheck:
    """What train.train needs to check its sample grids: the checker (None: "off") and the guild's policy."""
    checker: SafetyChecker | None
    mode: str = BLOCK

    def __call__(self, tiles: Sequence[Image.Image]) -> ScreenedTiles:
        return screen_tiles(tiles, check(self.checker, tiles), self.mode)
