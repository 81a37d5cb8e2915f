"""The image safety checker: the real StableDiffusionSafetyChecker with small random weights, loaded offline."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image

from storage.sample_photos import SAMPLES, sample_image
from tests.trainer.conftest import write_checker
from trainer import models, safety

CPU = models.pick_runtime("cpu")


def embed(checker: safety.SafetyChecker, image: Image.Image):
    """The image's embedding as the checker computes it (CLIP vision tower, then its projection)."""
    import torch

    pixels = checker.processor(images=[image.convert("RGB")], return_tensors="pt").pixel_values
    with torch.no_grad():
        return checker.model.visual_projection(checker.model.vision_model(pixels)[1])[0]


def flag_like(checker: safety.SafetyChecker, image: Image.Image, others: list[Image.Image]) -> None:
    """Point concept 0 at `image` with a threshold halfway between its similarity to itself and to the others."""
    import torch

    target = torch.nn.functional.normalize(embed(checker, image), dim=0)
    nearest = max(float(torch.dot(target, torch.nn.functional.normalize(embed(checker, o), dim=0)))
                  for o in others)
    with torch.no_grad():
        checker.model.concept_embeds[0] = target
        checker.model.concept_embeds_weights[0] = (1.0 + nearest) / 2


def fake_hub_cache(cache: Path, repo_id: str, files_from: list[Path]) -> None:
    """A Hugging Face cache entry for `repo_id` (refs/main and one snapshot) holding copies of the files."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    sha = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(sha)
    (repo / "snapshots" / sha).mkdir(parents=True)
    for f in files_from:
        shutil.copy2(f, repo / "snapshots" / sha / f.name)


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch) -> Path:
    import huggingface_hub.constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


@pytest.fixture
def model_without_checker(tiny_model, tmp_path) -> Path:
    """The tiny model without its safety_checker/ (as a model that ships none)."""
    out = tmp_path / "no-checker"
    shutil.copytree(tiny_model, out, ignore=shutil.ignore_patterns("safety_checker"))
    return out


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    return [sample_image(name) for name in SAMPLES]


def test_auto_loads_the_base_models_own_checker(tiny_model):
    """"auto" on a model that ships safety_checker/ loads that one, as the real checker class."""
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker

    checker = safety.load("auto", str(tiny_model), CPU)
    assert isinstance(checker.model, StableDiffusionSafetyChecker)
    assert checker.source == str(tiny_model / "safety_checker")


def test_the_tiny_checker_lets_real_photos_pass(tiny_model, photos):
    """The tiny model's checker flags none of scikit-image's photographs: the demo is not all withheld."""
    assert safety.load("auto", str(tiny_model), CPU).flags(photos) == [False] * len(photos)


@pytest.mark.parametrize("name", ["astronaut", "chelsea"])
def test_a_concept_at_a_photos_embedding_flags_that_photo_alone(tiny_model, photos, name):
    """With concept 0 set to a photo's embedding and its threshold between that and the others, the photo
    is flagged and the rest are not: the threshold decides."""
    checker = safety.load("auto", str(tiny_model), CPU)
    target = photos[SAMPLES.index(name)]
    flag_like(checker, target, [p for p in photos if p is not target])
    assert checker.flags(photos) == [p is target for p in photos]


def test_checks_run_in_batches(tiny_model, photos, monkeypatch):
    """More images than one batch are checked in several passes, with every flag in order."""
    checker = safety.load("auto", str(tiny_model), CPU)
    flag_like(checker, photos[0], photos[1:])
    monkeypatch.setattr(safety, "CHECK_BATCH", 2)
    assert checker.flags(photos * 2) == [True, False, False, False, False] * 2


def test_off_loads_nothing(tmp_path):
    """"off" is the only setting that gives no checker, whatever the base model."""
    assert safety.load("off", str(tmp_path / "missing"), CPU) is None


def test_a_local_checker_folder_loads(flags_everything, tiny_model, photos):
    """A folder laid out like CompVis/stable-diffusion-safety-checker is used as named."""
    checker = safety.load(str(flags_everything), str(tiny_model), CPU)
    assert checker.source == str(flags_everything) and checker.flags(photos[:2]) == [True, True]


def test_auto_falls_back_to_the_standard_checker_in_the_cache(tmp_path, empty_hub_cache, model_without_checker):
    """A base model without its own checker gets CompVis/stable-diffusion-safety-checker from the local cache."""
    folder = write_checker(tmp_path / "checker", threshold=1.0)
    fake_hub_cache(empty_hub_cache, safety.STANDARD, sorted(folder.iterdir()))
    checker = safety.load("auto", str(model_without_checker), CPU)
    assert "models--CompVis--stable-diffusion-safety-checker" in checker.source


@pytest.mark.parametrize("setting", ["auto", "someone/not-cached", "/no/such/checker"])
def test_an_unloadable_checker_says_what_to_do(setting, empty_hub_cache, model_without_checker):
    """Nothing to load offline: one error that names fetch-model and the "off" setting."""
    with pytest.raises(safety.SafetyCheckerUnavailable) as caught:
        safety.load(setting, str(model_without_checker), CPU)
    assert "dreambot fetch-model" in str(caught.value) and 'safety_checker = "off"' in str(caught.value)


@pytest.mark.parametrize(("mode", "keep", "flagged", "withheld"), [
    ("block", (0, 2), (False, False), 2),
    ("spoiler-in-age-restricted", (0, 1, 2, 3), (False, True, False, True), 0),
])
def test_screen_images_by_policy(mode, keep, flagged, withheld):
    """Block drops flagged images and counts them; spoiler keeps them all, marked."""
    assert safety.screen_images([False, True, False, True], mode) == safety.Screened(keep, flagged, withheld)


def test_block_greys_a_flagged_tile_and_keeps_the_others():
    """Under block a flagged grid tile becomes plain grey; unflagged tiles are untouched."""
    tiles = [Image.new("RGB", (8, 8), "red"), Image.new("RGB", (8, 8), "blue")]
    out = safety.screen_tiles(tiles, [True, False], "block")
    assert out.tiles[0].getcolors() == [(64, safety.GREY)] and out.tiles[1] is tiles[1]
    assert (out.nsfw, out.withheld, out.flagged) == (False, 1, 1)


def test_spoiler_keeps_a_flagged_tile_and_marks_the_grid():
    """Under spoiler-in-age-restricted the tiles stay as made and the grid is marked."""
    tiles = [Image.new("RGB", (8, 8), "red"), Image.new("RGB", (8, 8), "blue")]
    out = safety.screen_tiles(tiles, [True, False], "spoiler-in-age-restricted")
    assert out.tiles == tiles and (out.nsfw, out.withheld, out.flagged) == (True, 0, 1)


def test_an_unknown_policy_is_refused():
    """A typo in the policy never silently posts flagged images."""
    with pytest.raises(ValueError, match="unknown nsfw policy"):
        safety.screen_images([True], "allow")
