"""TrainConfig resolution from presets and job params."""

from __future__ import annotations

import json

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


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_the_shipped_faces_preset_trains_without_mirror_images(family):
    """Flips are the preset's: faces (asymmetric) turns them off, quick and balanced keep them, for every family."""
    from storage.config import REPO_CONFIG, load

    settings = load(REPO_CONFIG, env={}).trainer
    flips = {name: resolve(settings, {"preset": name}, token="sks", class_noun="person", family=family).flip
             for name in ("quick", "balanced", "faces")}
    assert flips == {"quick": True, "balanced": True, "faces": False}


def test_a_preset_s_flip_reaches_the_run():
    """A preset that turns flips off trains on the photos as they are; one that leaves flip unset mirrors them."""
    import dataclasses

    settings = dataclasses.replace(SETTINGS, presets={**SETTINGS.presets, "plain": Preset(flip=False)})
    assert not resolve(settings, {"preset": "plain"}, token="sks", class_noun="dog").flip
    assert resolve(settings, {"preset": "quick"}, token="sks", class_noun="dog").flip


@pytest.mark.parametrize(("name", "default"), [("snr_gamma", 0.0), ("crops_per_photo", 4)])
def test_augmentation_and_loss_weighting_defaults(name, default):
    """Min-SNR weighting is off and each photo is cached as 4 views unless the settings say otherwise."""
    assert getattr(resolve(SETTINGS, {}, token="sks", class_noun="dog"), name) == default


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


@pytest.mark.parametrize(("saved", "mode"), [(True, "default"), (False, "off"), ("reduce-overhead", "reduce-overhead")])
def test_a_config_saved_with_a_bool_compile_unet_reads_as_its_mode(saved, mode):
    """A job row written when compile_unet was a bool still loads: true is "default", false is "off"."""
    text = TrainConfig().to_json().replace('"compile_unet": "off"', f'"compile_unet": {json.dumps(saved)}')
    assert TrainConfig.from_json(text).compile_unet == mode


def test_an_unknown_compile_mode_is_refused_with_the_choices():
    """compile_unet takes only off, default or reduce-overhead (or the old true/false)."""
    with pytest.raises(ValueError, match="choose one of off, default, reduce-overhead"):
        TrainConfig(compile_unet="max-autotune")


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
                                  keep_checkpoints=5, device="cpu", mixed_precision="no",
                                  compile_unet="reduce-overhead",
                                  grid_images=4, grid_steps=6, grid_resolution=32, snr_gamma=5.0, crops_per_photo=2)
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


@pytest.mark.parametrize(("images", "rows", "cols"), [(10, 2, 2), (1, 1, 1), (2, 1, 2), (4, 2, 2), (3, 2, 1),
                                                     (100, 2, 2)])
def test_grid_layout_takes_whole_rows(images, rows, cols):
    """Up to one tile per seed is the instance prompt at that many seeds; more become whole rows of one tile per
    seed, never more rows than prompts."""
    cfg = TrainConfig(grid_images=images, eval_prompts=("{subject} as a superhero",), sample_seeds=(0, 1))
    prompts, seeds = cfg.grid_layout()
    assert (len(prompts), len(seeds)) == (rows, cols)


def test_default_progress_grid_is_the_instance_prompt_at_two_seeds():
    """A default progress grid shows the subject alone, at both seeds."""
    prompts, seeds = TrainConfig().grid_layout()
    assert (prompts, seeds) == (["a photo of sks dog"], (0, 1))


def test_default_final_grid_shows_every_prompt_once():
    """The default final grid is the instance prompt and the four evaluation prompts, one seed each."""
    prompts, seeds = TrainConfig().grid_layout(final=True)
    assert (len(prompts), len(seeds)) == (5, 1) and prompts[0] == "a photo of sks dog"


@pytest.mark.parametrize(("final", "expected"), [(False, (20, 256)), (True, (20, 512))])
def test_grid_size_defaults(final, expected):
    """By default progress grids are drawn at half the training resolution, the final grid at the full one."""
    assert TrainConfig(resolution=512).grid_size(final=final) == expected


def test_grid_sizes_come_from_the_settings():
    """Set steps and resolutions win over the defaults; 0 steps means sample_steps."""
    cfg = TrainConfig(resolution=512, sample_steps=9, grid_steps=0, grid_resolution=128, final_grid_steps=3,
                      final_grid_resolution=320)
    assert (cfg.grid_size(), cfg.grid_size(final=True)) == ((9, 128), (3, 320))


@pytest.mark.parametrize(("grid_every", "grids_at"), [(200, [200, 400, 600, 800]), (300, [300, 600, 800]),
                                                      (0, [800]), (1000, [800])])
def test_grid_cadence(grid_every, grids_at):
    """Checkpoints draw a grid at multiples of grid_every, and the last one always; 0 draws only the final grid."""
    cfg = TrainConfig(steps=800, grid_every=grid_every)
    assert [step for step in range(100, 801, 100) if cfg.draws_grid(step)] == grids_at


def test_default_grids_cost_at_most_a_tenth_of_the_default_training():
    """By the FLOP model beside the settings (SD 1.5, 512 px), the default preset's grids cost <= 10% of its steps."""
    from storage.config import REPO_CONFIG, load

    cfg = resolve(load(REPO_CONFIG, env={}).trainer, {}, token="sks", class_noun="dog")
    train_tflop = cfg.steps * 2 * 1.7  # two samples a step, forward and backward

    def grid_tflop(step):
        final = step == cfg.steps
        prompts, seeds = cfg.grid_layout(final=final)
        steps, resolution = cfg.grid_size(final=final)
        return len(prompts) * len(seeds) * (steps * 2 * 0.85 + 2.5) * (resolution / 512) ** 2

    grids = sum(grid_tflop(s) for s in range(cfg.checkpoint_every, cfg.steps + 1, cfg.checkpoint_every)
                if cfg.draws_grid(s))
    assert cfg.steps == 800 and grids <= 0.10 * train_tflop
