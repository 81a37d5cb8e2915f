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


WIDTH_KEYS = {"unet": {"block_out_channels", "cross_attention_dim", "sample_size"},
              "vae": {"block_out_channels", "norm_num_groups", "sample_size"},
              "text": {"hidden_size", "intermediate_size", "projection_dim"}}  # what the proxy may change


@pytest.mark.parametrize("part", sorted(WIDTH_KEYS))
def test_proxy_architecture_is_sd15s_narrowed(part):
    """The proxy's configs are SD 1.5's but for widths and sample size, with SD 1.5's ratios between levels."""
    from trainer.tiny_model import ARCHITECTURES

    proxy, sd15 = ARCHITECTURES["proxy"]()[part], ARCHITECTURES["sd15"]()[part]
    assert proxy.keys() == sd15.keys()
    assert {k: v for k, v in proxy.items() if k not in WIDTH_KEYS[part]} == \
        {k: v for k, v in sd15.items() if k not in WIDTH_KEYS[part]}
    if "block_out_channels" in proxy:
        ratios = [c / proxy["block_out_channels"][0] for c in proxy["block_out_channels"]]
        assert ratios == [c / sd15["block_out_channels"][0] for c in sd15["block_out_channels"]]


@pytest.fixture(scope="module")
def proxy_model(tmp_path_factory):
    """The proxy, saved once through `make-tiny-model --proxy`."""
    from trainer.cli import build_parser

    out = tmp_path_factory.mktemp("models") / "proxy"
    args = build_parser().parse_args(["make-tiny-model", str(out), "--proxy"])
    assert args.arch == "proxy" and args.func(args, None) == 0
    return out


def test_proxy_model_is_detected_as_sd1(proxy_model):
    """storage.model_families reads the saved proxy as an SD 1.x model."""
    from storage import model_families

    assert model_families.detect(str(proxy_model)).name == "sd1"


def test_proxy_model_loads_with_sd15s_block_layout(proxy_model):
    """The worker's loader loads the proxy, whose UNet, VAE and text encoder have SD 1.5's blocks and depths."""
    from trainer import models
    from trainer.tiny_model import PROXY_RESOLUTION, _sd15_configs

    sd15 = _sd15_configs()
    pipe = models.load_pipeline(str(proxy_model), models.pick_runtime("cpu"))
    assert tuple(pipe.unet.config.down_block_types) == sd15["unet"]["down_block_types"]
    assert tuple(pipe.unet.config.up_block_types) == sd15["unet"]["up_block_types"]
    assert pipe.unet.config.layers_per_block == 2 and pipe.unet.config.attention_head_dim == 8
    assert len(pipe.vae.config.block_out_channels) == 4 and pipe.vae.config.layers_per_block == 2
    assert pipe.text_encoder.config.num_hidden_layers == 12 and pipe.text_encoder.config.num_attention_heads == 12
    assert pipe.vae.config.sample_size == PROXY_RESOLUTION
