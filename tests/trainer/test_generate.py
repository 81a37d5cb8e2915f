"""Generation: prompt limits, per-image seeds, stopping between images and steps, the adapter cache."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import random_adapter
from trainer.errors import PromptTooLong
from trainer.generate import ImageGenerator, check_prompt, png_bytes, render


def test_prompt_over_77_tokens_is_refused(pipe):
    """A prompt the text encoder cannot read whole is refused with its length, never cut."""
    gen = ImageGenerator(pipe)
    with pytest.raises(PromptTooLong, match="80 tokens long") as err:
        gen.generate(" ".join(["dog"] * 80), [], n=1, steps=1, resolution=64)
    assert "nothing was cut" in str(err.value)


def test_prompt_of_exactly_75_tokens_is_accepted(pipe):
    """75 words plus start and end marks fit."""
    assert check_prompt(pipe.tokenizer, " ".join(["dog"] * 75)) == 77


def test_each_image_has_its_own_recorded_seed(pipe):
    """n images get seeds seed..seed+n-1, and one seed alone remakes its image exactly."""
    gen = ImageGenerator(pipe)
    two = gen.generate("a photo of a dog", [], n=2, seed=5, steps=2, resolution=64)
    one = gen.generate("a photo of a dog", [], n=1, seed=6, steps=2, resolution=64)
    assert two.seeds == [5, 6] and one.seeds == [6]
    assert np.array_equal(np.asarray(two.images[1]), np.asarray(one.images[0]))


def test_generate_makes_the_batched_render_of_its_seeds(pipe):
    """generate(n=2) with a should_stop that never fires makes exactly the batched render of seeds 5 and 6."""
    made = ImageGenerator(pipe).generate("a photo of a dog", [], n=2, seed=5, steps=2, resolution=64,
                                         should_stop=lambda: False).images
    batched = render(pipe, ["a photo of a dog"], seeds=[5, 6], steps=2, guidance=7.5, resolution=64)
    assert all(np.array_equal(np.asarray(m), np.asarray(b)) for m, b in zip(made, batched, strict=True))


def _count_sampler_calls(pipe) -> list[int]:
    calls = []
    pipe.unet.register_forward_hook(lambda *_: calls.append(1))
    return calls


def test_a_stop_asked_before_the_start_makes_nothing(pipe):
    """A job cancelled before its images start never reaches the sampler."""
    calls = _count_sampler_calls(pipe)
    with pytest.raises(InterruptedError):
        ImageGenerator(pipe).generate("a photo of a dog", [], n=3, seed=0, steps=3, resolution=64,
                                      should_stop=lambda: True)
    assert calls == []


def test_stop_between_sampler_steps_cuts_the_image_short(pipe):
    """should_stop is asked between denoising steps: the rest of the batch's steps are skipped."""
    calls = _count_sampler_calls(pipe)
    gen = ImageGenerator(pipe)
    with pytest.raises(InterruptedError):
        gen.generate("a photo of a dog", [], n=2, seed=0, steps=5, resolution=64,
                     should_stop=lambda: len(calls) >= 1)
    assert len(calls) == 1


def test_a_stop_never_asked_for_changes_nothing(pipe):
    """A should_stop that stays false gives the same images as none."""
    gen = ImageGenerator(pipe)
    plain = gen.generate("a photo of a dog", [], n=2, seed=3, steps=2, resolution=64).images
    watched = gen.generate("a photo of a dog", [], n=2, seed=3, steps=2, resolution=64,
                           should_stop=lambda: False).images
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(plain, watched, strict=True))


def test_adapter_cache_evicts_least_recently_used(pipe, tmp_path):
    """With room for one adapter, using a second unloads the first; the base weights are never reloaded."""
    a, b = random_adapter(pipe, tmp_path / "a", 1), random_adapter(pipe, tmp_path / "b", 2)
    gen = ImageGenerator(pipe, cache_size=1)
    base_weight = pipe.unet.conv_in.weight
    gen.use([("a", a)])
    gen.use([("b", b)])
    assert gen.loaded == ["b"] and pipe.unet.conv_in.weight is base_weight


def test_two_adapters_at_once_differ_from_each_alone(pipe, tmp_path):
    """Two subjects in one prompt activate both adapters together."""
    a, b = random_adapter(pipe, tmp_path / "a", 1), random_adapter(pipe, tmp_path / "b", 2)
    gen = ImageGenerator(pipe)
    run = lambda adapters: np.asarray(gen.generate("a photo of sks dog", adapters, n=1, seed=0, steps=2,  # noqa: E731
                                                   resolution=64).images[0], dtype=float)
    only_a, both = run([("a", a)]), run([("a", a), ("b", b)])
    assert pipe.get_active_adapters() == ["a", "b"]
    assert np.abs(only_a - both).max() > 0


def test_png_is_scaled_under_the_size_limit():
    """An image too big for the upload limit is shrunk until its PNG fits."""
    from PIL import Image

    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (512, 512, 3), dtype=np.uint8))
    assert len(png_bytes(noise, max_bytes=200_000)) <= 200_000


def _photo(side: int):
    from storage.sample_photos import sample_image

    return sample_image("astronaut").convert("RGB").resize((side, side))


def test_saved_png_records_the_marks(tmp_path):
    """save_png writes the provenance marks: AI-generated, base model, LoRA hash, seed."""
    from storage import provenance
    from trainer.generate import save_png

    marks = provenance.Marks(base_model="runwayml/stable-diffusion-v1-5", lora_sha256=("ab" * 32,), seed=7)
    report = provenance.read(save_png(_photo(64), tmp_path / "i.png", marks=marks))
    assert report.ai_generated and (report.base_model, report.lora_sha256, report.seed) == (
        marks.base_model, marks.lora_sha256, 7)


def test_marks_survive_scaling_down_to_the_size_limit():
    """An image shrunk to fit the upload limit keeps its marks."""
    from PIL import Image

    from storage import provenance

    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (512, 512, 3), dtype=np.uint8))
    data = png_bytes(noise, max_bytes=200_000, marks=provenance.Marks(base_model="m", seed=3))
    report = provenance.read(data)
    assert len(data) <= 200_000 and report.size[0] < 512
    assert report.ai_generated and report.seed == 3


def test_grid_records_the_marks_and_watermark(tmp_path):
    """save_grid marks the grid as a whole and, when asked, watermarks it."""
    from PIL import Image

    from storage import provenance
    from trainer import watermark
    from trainer.generate import save_grid

    path = save_grid([_photo(128)] * 4, cols=2, path=tmp_path / "g.png",
                     marks=provenance.Marks(base_model="m", watermark=True))
    report = provenance.read(path)
    assert report.ai_generated and report.watermark == provenance.WATERMARK_NAME
    assert watermark.detect(Image.open(path)).found


def test_an_image_too_small_for_the_watermark_is_marked_in_metadata_only(tmp_path):
    """Asking for the watermark on a 40 px image writes the metadata and records no watermark."""
    from storage import provenance
    from trainer.generate import save_png

    report = provenance.read(save_png(_photo(40), tmp_path / "s.png",
                                      marks=provenance.Marks(base_model="m", watermark=True)))
    assert report.ai_generated and report.watermark is None


def test_no_marks_means_a_plain_png(tmp_path):
    """Without marks (as before) nothing is recorded."""
    from storage import provenance
    from trainer.generate import save_png

    assert not provenance.read(save_png(_photo(64), tmp_path / "p.png")).ai_generated
