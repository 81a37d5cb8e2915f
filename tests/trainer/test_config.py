"""TrainConfig resolution from presets and job params."""

from __future__ import annotations

import pytest

from storage.config import Preset, TrainerSettings
from trainer.config import TrainConfig, resolve
from trainer.errors import InputError

SETTINGS = TrainerSettings(base_model="some/model", presets={
    "quick": Preset(steps=400, learning_rate=1e-4, rank=8, alpha=8.0),
    "faces": Preset(steps=1200, learning_rate=5e-5, rank=32, alpha=32.0, train_text_encoder=True)},
    default_preset="quick")


def test_resolve_takes_the_preset():
    """A preset's steps, rate, rank, alpha and text-encoder choice become the config."""
    cfg = resolve(SETTINGS, {"preset": "faces"}, token="ohwx", class_noun="person")
    assert (cfg.steps, cfg.learning_rate, cfg.rank, cfg.alpha, cfg.train_text_encoder) == (1200, 5e-5, 32, 32.0, True)
    assert cfg.instance_prompt == "a photo of ohwx person" and cfg.class_prompt == "a photo of a person"


def test_learning_rate_scale_multiplies_every_preset():
    """A base model of another size takes the presets' learning rates times the scale; nothing else changes."""
    import dataclasses

    scaled = dataclasses.replace(SETTINGS, learning_rate_scale=30.0)
    for name in ("quick", "faces"):
        plain, cfg = (resolve(s, {"preset": name}, token="sks", class_noun="dog") for s in (SETTINGS, scaled))
        assert cfg.learning_rate == pytest.approx(30 * plain.learning_rate)
        assert dataclasses.replace(cfg, learning_rate=plain.learning_rate) == plain


def test_batch_size_comes_from_the_settings():
    """The trainer's batch setting reaches the run; the default is one photo (and one class image) per step."""
    import dataclasses

    assert resolve(SETTINGS, {}, token="sks", class_noun="dog").batch_size == 1
    assert resolve(dataclasses.replace(SETTINGS, batch_size=8), {}, token="sks", class_noun="dog").batch_size == 8


def test_noise_offset_comes_from_the_settings():
    """Offset noise is off by default and reaches the run when the settings turn it on."""
    import dataclasses

    assert resolve(SETTINGS, {}, token="sks", class_noun="dog").noise_offset == 0.0
    assert resolve(dataclasses.replace(SETTINGS, noise_offset=0.05), {}, token="sks",
                   class_noun="dog").noise_offset == 0.05


def test_resolve_applies_overrides():
    """steps and model from the job override the preset and the settings; no preset means the default."""
    cfg = resolve(SETTINGS, {"steps": 10, "model": "/models/x"}, token="sks", class_noun="dog")
    assert (cfg.preset, cfg.steps, cfg.base_model, cfg.checkpoint_every) == ("quick", 10, "/models/x", 10)


@pytest.mark.parametrize("params", [{"preset": "turbo"}, {"steps": 0}, {"steps": "many"}])
def test_resolve_refuses_bad_params(params):
    """An unknown preset or a bad step count is an input error with a clear message."""
    with pytest.raises(InputError):
        resolve(SETTINGS, params, token="sks", class_noun="dog")


def test_config_round_trips_through_json():
    """The resolved config is saved as JSON and read back equal."""
    cfg = resolve(SETTINGS, {"preset": "faces"}, token="sks", class_noun="cat")
    assert TrainConfig.from_json(cfg.to_json()) == cfg


def test_every_identifier_is_one_rare_clip_token(tmp_path):
    """Each token storage hands out is one whole-word CLIP token, so the subject binds to it and not to letters."""
    from storage.subjects import RARE_TOKENS
    from trainer.clip_tokenizer import write_clip_tokenizer

    tokenizer = write_clip_tokenizer(tmp_path)
    assert len(set(RARE_TOKENS)) == len(RARE_TOKENS)
    for token in RARE_TOKENS:
        assert tokenizer.tokenize(token) == [token + "</w>"], token


def test_every_setting_reaches_the_run_under_its_own_name():
    """Each TrainConfig field declared from a trainer setting takes that setting's value, not a default of its own."""
    import dataclasses

    changed = dataclasses.replace(SETTINGS, class_images=7, prior_loss_weight=0.5, sample_steps=9, guidance_scale=3.0,
                                  keep_checkpoints=5, device="cpu", mixed_precision="no", compile_unet=True,
                                  grid_images=4, grid_steps=6, grid_resolution=32)
    cfg = resolve(changed, {}, token="sks", class_noun="dog")
    for f in dataclasses.fields(TrainConfig):
        if "setting" in f.metadata and f.name not in ("base_model", "checkpoint_every"):
            assert getattr(cfg, f.name) == getattr(changed, f.metadata["setting"]), f.name


@pytest.mark.parametrize(("family", "resolution"), [("sd1", 512), ("sd2", 768), ("sdxl", 1024)])
def test_the_family_chooses_the_resolution(family, resolution):
    """With trainer.resolution at 0, each family trains at its own size; a set resolution wins over it."""
    import dataclasses

    auto = dataclasses.replace(SETTINGS, resolution=0)
    assert resolve(auto, {}, token="sks", class_noun="dog", family=family).resolution == resolution
    assert resolve(dataclasses.replace(auto, resolution=64), {}, token="sks", class_noun="dog",
                   family=family).resolution == 64


def test_sdxl_has_its_own_presets():
    """SDXL takes its family's preset of the same name; SD 1.x keeps [trainer.presets]."""
    from storage.config import REPO_CONFIG, load

    settings = load(REPO_CONFIG, env={}).trainer
    sd1, sdxl = (resolve(settings, {"preset": "balanced"}, token="sks", class_noun="dog", family=f)
                 for f in ("sd1", "sdxl"))
    assert (sd1.steps, sd1.rank, sd1.resolution) == (800, 16, 512)
    assert (sdxl.steps, sdxl.rank, sdxl.learning_rate, sdxl.resolution, sdxl.family) == (500, 16, 1e-4, 1024, "sdxl")


@pytest.mark.parametrize(("images", "rows", "cols"), [(10, 2, 2), (1, 1, 1), (4, 2, 2), (3, 1, 2), (100, 2, 2)])
def test_grid_layout_takes_whole_rows(images, rows, cols):
    """grid_images tiles become whole rows of one tile per seed, never more rows than prompts."""
    cfg = TrainConfig(grid_images=images, eval_prompts=("{subject} as a superhero",), sample_seeds=(0, 1))
    prompts, seeds = cfg.grid_layout()
    assert (len(prompts), len(seeds)) == (rows, cols)


def test_default_grid_is_todays_ten_images():
    """The default grid is the instance prompt and four evaluation prompts, two seeds each."""
    prompts, seeds = TrainConfig().grid_layout()
    assert len(prompts) * len(seeds) == 10
