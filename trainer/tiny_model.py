"""Stable Diffusion pipelines with seeded random weights, for tests, the offline demo and benchmarks.

`tiny` is a few-megabyte SD-1.x-shaped model (64 px images, 8x8 latents) that trains on a CPU in
seconds; `sd15` is the real SD 1.5 architecture (860M-parameter UNet) with random weights, for
timing on a GPU; `proxy` is SD 1.5 narrowed to weigh like it on a CPU (see `_proxy_configs`). All use
the real CLIP tokenizer, built from the BPE merges that open-clip-torch ships, so prompts tokenize to
the same ids as with a real model. `make_tiny_model` saves the normal diffusers layout, which loads
through `StableDiffusionPipeline.from_pretrained` exactly like a downloaded model, with
`safety_checker/` and `feature_extractor/` as SD 1.x repositories ship them: a tiny seeded
`StableDiffusionSafetyChecker` whose thresholds let every image pass, so the demo and the tests run
the real check on every image (tests move a concept onto an image to flag it).
"""

from __future__ import annotations

from pathlib import Path

from storage import licenses
from trainer.clip_tokenizer import CLIP_VOCAB_SIZE, MAX_TOKENS, write_clip_tokenizer


def _scheduler(prediction_type: str):
    """SD 1.5's PNDM scheduler; SD 2's v-prediction models ship DDIM with the same betas."""
    from diffusers import DDIMScheduler, PNDMScheduler

    betas = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000}
    if prediction_type == "epsilon":
        return PNDMScheduler(**betas, skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)
    return DDIMScheduler(**betas, prediction_type=prediction_type, clip_sample=False, set_alpha_to_one=False,
                         steps_offset=1)


def _tiny_configs() -> dict:
    return {
        "unet": {"sample_size": 8, "in_channels": 4, "out_channels": 4, "layers_per_block": 1,
                 "block_out_channels": (32, 64), "down_block_types": ("CrossAttnDownBlock2D",) * 2,
                 "up_block_types": ("CrossAttnUpBlock2D",) * 2, "cross_attention_dim": 32,
                 "attention_head_dim": 4, "norm_num_groups": 16},
        "vae": {"in_channels": 3, "out_channels": 3, "latent_channels": 4, "sample_size": 64,
                "layers_per_block": 1, "block_out_channels": (16, 16, 32, 32), "norm_num_groups": 8,
                "down_block_types": ("DownEncoderBlock2D",) * 4, "up_block_types": ("UpDecoderBlock2D",) * 4},
        "text": {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
                 "projection_dim": 32},
    }


def _sd15_configs() -> dict:
    """The shapes of runwayml/stable-diffusion-v1-5, written out (no download)."""
    return {
        "unet": {"sample_size": 64, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
                 "block_out_channels": (320, 640, 1280, 1280),
                 "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                 "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                 "cross_attention_dim": 768, "attention_head_dim": 8, "norm_num_groups": 32},
        "vae": {"in_channels": 3, "out_channels": 3, "latent_channels": 4, "sample_size": 512,
                "layers_per_block": 2, "block_out_channels": (128, 256, 512, 512), "norm_num_groups": 32,
                "down_block_types": ("DownEncoderBlock2D",) * 4, "up_block_types": ("UpDecoderBlock2D",) * 4},
        "text": {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12, "num_hidden_layers": 12,
                 "projection_dim": 768, "hidden_act": "quick_gelu"},
    }


PROXY_RESOLUTION = 128  # pixels per side the proxy trains at: 1/4 of SD 1.5's 512, a 16x16 latent


def _proxy_configs() -> dict:
    """SD 1.5's architecture narrowed so that its parts weigh against each other as SD 1.5's do at 512 px.

    Everything but the widths is SD 1.5's: the UNet's four levels (three CrossAttn, one plain), two
    layers per block, eight attention heads, the VAE's four levels of two layers, CLIP's twelve layers
    of twelve heads with quick_gelu. Training pays the VAE and the text encoder per sample only when
    it doesn't cache them, so what a benchmark needs is their share of a plain-loop sample's FLOPs
    (bench.flops: VAE encode of one image, the text encoder on 77 tokens, UNet forward + backward with
    rank-16 LoRA), SD 1.5's at 512 px: VAE 38.8%, text 0.46%, UNet 60.7% (2.88 TFLOP).
    - At 128 px every image-sized tensor has 1/16 of SD 1.5's pixels. The UNet at 0.3 of SD 1.5's
      width (96, 192, 384, 384; 32 groups still divide it) takes 0.41 s for a training step of
      1 instance + 1 class sample on one CPU thread (another benchmark sharing the machine), and
      0.63 s in `bench.train --proxy` at torch's default 2 threads on this project's 2-core machine.
    - The VAE at 0.28 (36, 72, 144, 144) brings its share back to SD 1.5's; its 9 norm groups keep
      SD 1.5's 4 channels per group at the first level (32 would not divide 36). At 0.25, with the
      UNet at 0.3, it would be 17% light.
    - The 77-token prompt does not shrink with the image, so the text encoder narrows by the UNet's
      factor times the image's side, about 1/16: width 48 (4 per head), 192 in its MLP.
    Measured split at 128 px (python -m bench.flops): VAE 37.7%, text 0.45%, UNet 61.8% (14.4 GFLOP):
    within 3% of SD 1.5's on each part. Seconds split otherwise on a CPU: the VAE's forward convolutions
    run at about twice the FLOP rate of the UNet's training step, so VAE + text take about a quarter of
    a plain-loop step's time on the proxy at one thread (14% at two), not 38%.
    """
    sd15 = _sd15_configs()
    return {
        "unet": {**sd15["unet"], "sample_size": PROXY_RESOLUTION // 8, "block_out_channels": (96, 192, 384, 384),
                 "cross_attention_dim": 48},
        "vae": {**sd15["vae"], "sample_size": PROXY_RESOLUTION, "block_out_channels": (36, 72, 144, 144),
                "norm_num_groups": 9},
        "text": {**sd15["text"], "hidden_size": 48, "intermediate_size": 192, "projection_dim": 48},
    }


def _tiny_sdxl_configs() -> dict:
    """SDXL's layout at the tiny model's size: two text encoders whose penultimate states are concatenated
    (32 + 32 = the UNet's cross-attention width), the second one's pooled projection, and the UNet's
    "text_time" embedding of that projection plus six micro-conditioning numbers (sizes and crop)."""
    text = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
            "projection_dim": 32}
    return {
        "unet": {"sample_size": 8, "in_channels": 4, "out_channels": 4, "layers_per_block": 1,
                 "block_out_channels": (32, 64), "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
                 "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"), "cross_attention_dim": 64,
                 "attention_head_dim": (2, 4), "use_linear_projection": True, "norm_num_groups": 16,
                 "addition_embed_type": "text_time", "addition_time_embed_dim": 8,
                 "projection_class_embeddings_input_dim": 6 * 8 + text["projection_dim"]},
        "vae": {**_tiny_configs()["vae"], "scaling_factor": 0.13025, "force_upcast": True},
        "text": text,
        "text_2": text,
    }


def _sdxl_configs() -> dict:
    """The shapes of stabilityai/stable-diffusion-xl-base-1.0, written out (no download)."""
    return {
        "unet": {"sample_size": 128, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
                 "block_out_channels": (320, 640, 1280),
                 "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                 "transformer_layers_per_block": (1, 2, 10), "cross_attention_dim": 2048,
                 "attention_head_dim": (5, 10, 20), "use_linear_projection": True, "norm_num_groups": 32,
                 "addition_embed_type": "text_time", "addition_time_embed_dim": 256,
                 "projection_class_embeddings_input_dim": 2816},
        "vae": {**_sd15_configs()["vae"], "sample_size": 1024, "scaling_factor": 0.13025, "force_upcast": True},
        "text": {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12, "num_hidden_layers": 12,
                 "projection_dim": 768, "hidden_act": "quick_gelu"},
        "text_2": {"hidden_size": 1280, "intermediate_size": 5120, "num_attention_heads": 20,
                   "num_hidden_layers": 32, "projection_dim": 1280, "hidden_act": "gelu"},
    }


ARCHITECTURES = {"tiny": _tiny_configs, "sd15": _sd15_configs, "proxy": _proxy_configs,
                 "tiny-sdxl": _tiny_sdxl_configs, "sdxl": _sdxl_configs}
SDXL_ARCHITECTURES = ("tiny-sdxl", "sdxl")


def build_random_models(arch: str = "tiny", *, seed: int = 0) -> tuple:
    """(UNet, VAE, first text encoder) of the named architecture with seeded random weights, fp32, on torch's
    default device: under `with torch.device("meta")` they have shapes and no storage (for counting FLOPs)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = ARCHITECTURES[arch]()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**cfg["unet"])
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(**cfg["vae"])
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=CLIP_VOCAB_SIZE, max_position_embeddings=MAX_TOKENS,
        bos_token_id=49406, eos_token_id=49407, pad_token_id=49407, **cfg["text"]))
    return unet, vae, text_encoder


def build_random_pipeline(arch: str = "tiny", *, seed: int = 0, prediction_type: str = "epsilon",
                          tokenizer_dir: str | Path | None = None):
    """A StableDiffusionPipeline of the named architecture with seeded random weights (fp32, CPU)."""
    import tempfile

    from diffusers import StableDiffusionPipeline

    if prediction_type not in ("epsilon", "v_prediction"):
        raise ValueError(f"prediction_type must be epsilon or v_prediction, not {prediction_type!r}")
    cfg = ARCHITECTURES[arch]()
    unet, vae, text_encoder = build_random_models(arch, seed=seed)
    if tokenizer_dir is None:
        with tempfile.TemporaryDirectory() as tmp:
            tokenizer = write_clip_tokenizer(tmp)
    else:
        tokenizer = write_clip_tokenizer(tokenizer_dir)
    if arch in SDXL_ARCHITECTURES:
        return _sdxl_pipeline(cfg, seed=seed, unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                              prediction_type=prediction_type)
    return StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                   scheduler=_scheduler(prediction_type), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)


def _sdxl_pipeline(cfg: dict, *, seed: int, unet, vae, text_encoder, tokenizer, prediction_type: str):
    """A StableDiffusionXLPipeline around the parts built so far, plus its second text encoder and tokenizer.

    The second tokenizer pads with "!" (id 0), as SDXL base's OpenCLIP tokenizer does; its ids are otherwise
    the first one's.
    """
    import copy

    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    torch.manual_seed(seed + 4)
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(
        vocab_size=CLIP_VOCAB_SIZE, max_position_embeddings=MAX_TOKENS,
        bos_token_id=49406, eos_token_id=49407, pad_token_id=0, **cfg["text_2"]))
    tokenizer_2 = copy.deepcopy(tokenizer)
    tokenizer_2.pad_token = "!"
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       num_train_timesteps=1000, prediction_type=prediction_type,
                                       timestep_spacing="leading", steps_offset=1)
    return StableDiffusionXLPipeline(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                                     tokenizer=tokenizer, tokenizer_2=tokenizer_2, unet=unet, scheduler=scheduler,
                                     force_zeros_for_empty_prompt=True, add_watermarker=False)


TINY_CHECKER_SIZE = 32  # the tiny checker's input images, in pixels (the real one reads 224)


def build_tiny_safety_checker(*, seed: int = 0):
    """(StableDiffusionSafetyChecker, CLIPImageProcessor): a small seeded CLIP vision tower that flags nothing.

    The checker flags an image when its cosine similarity to a concept embedding exceeds that concept's
    threshold. The embeddings are seeded random vectors and every threshold is 1.0, which a cosine
    similarity never exceeds: ordinary images pass, and a test that sets a concept to an image's own
    embedding with a lower threshold sees that image flagged.
    """
    import torch
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig, CLIPImageProcessor

    size = TINY_CHECKER_SIZE
    config = CLIPConfig(
        text_config={"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
                     "vocab_size": CLIP_VOCAB_SIZE, "max_position_embeddings": MAX_TOKENS},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2,
                       "image_size": size, "patch_size": 8},
        projection_dim=32)
    torch.manual_seed(seed + 3)
    checker = StableDiffusionSafetyChecker(config)
    with torch.no_grad():
        checker.concept_embeds.copy_(torch.randn_like(checker.concept_embeds))
        checker.special_care_embeds.copy_(torch.randn_like(checker.special_care_embeds))
        checker.concept_embeds_weights.fill_(1.0)
        checker.special_care_embeds_weights.fill_(1.0)
    processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    return checker.eval(), processor


TINY_ARCHS = {"sd1": "tiny", "sdxl": "tiny-sdxl", "proxy": "proxy"}  # make_tiny_model's `arch` -> ARCHITECTURES
TITLES = {"sd1": "dreambot tiny test model", "sdxl": "dreambot tiny SDXL test model",
          "proxy": "dreambot SD 1.5 proxy model"}  # the model card's title


def native_resolution(arch: str) -> int:
    """The pixel size make_tiny_model's `arch` is built for (its VAE's sample size): 64, or the proxy's 128."""
    return ARCHITECTURES[TINY_ARCHS[arch]]()["vae"]["sample_size"]


def make_tiny_model(out_dir: str | Path, *, seed: int = 0, prediction_type: str = "epsilon",
                    arch: str = "sd1") -> Path:
    """Save a tiny seeded pipeline, with its tiny safety checker, in the diffusers layout under `out_dir`.

    `arch` "sd1" is SD 1.x-shaped (SD 2.x with `prediction_type="v_prediction"`), "sdxl" SDXL base-shaped,
    "proxy" SD 1.5's architecture narrowed for CPU benchmarks (about 330 MB; 128 px, PROXY_RESOLUTION).
    SDXL repositories ship no safety checker in model_index.json; the tiny one still sits in
    `safety_checker/` and `feature_extractor/`, where trainer.safety looks for a model's own checker.
    """
    if arch not in TINY_ARCHS:
        raise ValueError(f"arch must be one of {', '.join(TINY_ARCHS)}, not {arch!r}")
    out = Path(out_dir)
    pipe = build_random_pipeline(TINY_ARCHS[arch], seed=seed, prediction_type=prediction_type)
    checker, processor = build_tiny_safety_checker(seed=seed)
    if arch == "sdxl":
        pipe.save_pretrained(out, safe_serialization=True)
        checker.save_pretrained(out / "safety_checker", safe_serialization=True)
        processor.save_pretrained(out / "feature_extractor")
        tokenizer_2 = write_clip_tokenizer(out / "tokenizer_2")
        tokenizer_2.pad_token = "!"
        tokenizer_2.save_pretrained(out / "tokenizer_2")
    else:
        pipe.register_modules(safety_checker=checker, feature_extractor=processor)
        pipe.register_to_config(requires_safety_checker=True)
        pipe.save_pretrained(out, safe_serialization=True)
    write_clip_tokenizer(out / "tokenizer")  # keep vocab.json + merges.txt beside tokenizer.json
    licenses.write_test_model_card(out, title=TITLES[arch])  # its license, read like a real card's
    return out
