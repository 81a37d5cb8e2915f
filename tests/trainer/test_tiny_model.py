"""The tiny model: real CLIP tokenizer, standard diffusers layout."""

from __future__ import annotations

import json

import pytest

from trainer.clip_tokenizer import CLIP_VOCAB_SIZE, write_clip_tokenizer


@pytest.mark.parametrize(("prompt", "ids"), [
    ("a photo of a dog", [49406, 320, 1125, 539, 320, 1929, 49407]),
    ("A  PHOTO of a Dog", [49406, 320, 1125, 539, 320, 1929, 49407]),
])
def test_tokenizer_gives_real_clip_ids(tmp_path, prompt, ids):
    """The tokenizer built from open-clip's BPE file gives OpenAI CLIP's ids."""
    tokenizer = write_clip_tokenizer(tmp_path)
    assert tokenizer(prompt).input_ids == ids


def test_tokenizer_has_full_vocabulary(tmp_path):
    """All 49,408 tokens are there, with the specials last, and the model length is 77."""
    tokenizer = write_clip_tokenizer(tmp_path)
    assert len(tokenizer) == CLIP_VOCAB_SIZE
    assert tokenizer.model_max_length == 77
    vocab = json.loads((tmp_path / "vocab.json").read_text())
    assert vocab["<|startoftext|>"] == 49406 and vocab["<|endoftext|>"] == 49407


def test_tiny_model_loads_with_from_pretrained(tiny_model):
    """The saved folder loads through StableDiffusionPipeline.from_pretrained like a downloaded model."""
    import torch
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_model, dtype=torch.float32)
    assert pipe.unet.config.sample_size == 8 and pipe.unet.config.cross_attention_dim == 32
    assert pipe.text_encoder.config.vocab_size == CLIP_VOCAB_SIZE
    assert pipe.vae_scale_factor == 8
    assert pipe.tokenizer("a photo of a dog").input_ids[1:-1] == [320, 1125, 539, 320, 1929]


def test_tiny_model_ships_a_safety_checker_as_sd_repositories_do(tiny_model):
    """model_index.json names safety_checker/ and feature_extractor/, and the pipeline loads the real classes."""
    import torch
    from diffusers import StableDiffusionPipeline
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker

    index = json.loads((tiny_model / "model_index.json").read_text())
    assert index["safety_checker"] == ["stable_diffusion", "StableDiffusionSafetyChecker"]
    assert index["feature_extractor"] == ["transformers", "CLIPImageProcessor"]
    pipe = StableDiffusionPipeline.from_pretrained(tiny_model, dtype=torch.float32)
    assert isinstance(pipe.safety_checker, StableDiffusionSafetyChecker)
    assert pipe.feature_extractor.crop_size == {"height": 32, "width": 32}


def test_v_prediction_option_sets_the_scheduler(tmp_path):
    """--prediction-type v_prediction makes an SD 2-style model."""
    from trainer.cli import build_parser

    args = build_parser().parse_args(["make-tiny-model", str(tmp_path / "v"), "--prediction-type", "v_prediction"])
    assert args.func(args, None) == 0
    config = json.loads((tmp_path / "v" / "scheduler" / "scheduler_config.json").read_text())
    assert config["prediction_type"] == "v_prediction"


def test_tiny_sdxl_model_keeps_its_checker_where_auto_finds_it(tiny_sdxl_model):
    """SDXL's model_index.json names no checker (as SDXL repositories), yet trainer.safety "auto" loads the tiny one."""
    from trainer import safety
    from trainer.models import pick_runtime

    index = json.loads((tiny_sdxl_model / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionXLPipeline" and "safety_checker" not in index
    checker = safety.load("auto", str(tiny_sdxl_model), pick_runtime("cpu"))
    assert checker.source == str(tiny_sdxl_model / "safety_checker")
