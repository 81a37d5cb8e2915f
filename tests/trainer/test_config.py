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
    from trainer.tiny_model import write_clip_tokenizer

    tokenizer = write_clip_tokenizer(tmp_path)
    assert len(set(RARE_TOKENS)) == len(RARE_TOKENS)
    for token in RARE_TOKENS:
        assert tokenizer.tokenize(token) == [token + "</w>"], token
