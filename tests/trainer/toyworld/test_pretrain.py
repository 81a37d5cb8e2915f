"""Pretraining's pure parts, and a two-step run that saves a loadable, small model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trainer.toyworld import pretrain, scenes


def test_vae_loss_is_mse_when_the_posterior_is_the_prior():
    """mean 0, logvar 0: the KL term is 0 and the loss is the MSE."""
    recon, target = torch.zeros(1, 3, 2, 2), torch.ones(1, 3, 2, 2)
    z = torch.zeros(1, 4, 1, 1)
    assert float(pretrain.vae_loss(recon, target, z, z, kl_weight=1.0)) == pytest.approx(1.0)


def test_vae_loss_kl_by_hand():
    """mean 1, logvar 0: KL per element = 0.5 * (1 + 1 - 1 - 0) = 0.5, times the weight."""
    x = torch.zeros(1, 3, 2, 2)
    assert float(pretrain.vae_loss(x, x, torch.ones(1, 4, 1, 1), torch.zeros(1, 4, 1, 1), kl_weight=0.1)) == \
        pytest.approx(0.05)


def test_latent_scale_gives_unit_std():
    latents = torch.randn(1000, generator=torch.Generator().manual_seed(0)) * 5
    assert float((latents * pretrain.latent_scale(latents)).std()) == pytest.approx(1.0, abs=1e-5)


def test_schedule_matches_diffusers():
    """SD's scaled-linear noise schedule, the same numbers diffusers' DDPMScheduler uses."""
    from diffusers import DDPMScheduler

    want = DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear").alphas_cumprod
    assert torch.allclose(pretrain.scaled_linear_alphas_cumprod(0.00085, 0.012, 1000), want, atol=1e-6)


@pytest.mark.parametrize(("u", "want"), [
    ((0.05, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9), ""),
    ((0.5, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9), "a photo of a small red circle in the top left on a blue background"),
    ((0.5, 0.1, 0.9, 0.9, 0.9, 0.9, 0.9), "a photo of a small circle in the top left on a blue background"),
    ((0.5, 0.9, 0.1, 0.9, 0.9, 0.9, 0.9), "a photo of a small red circle in the top left"),
    ((0.5, 0.9, 0.9, 0.1, 0.1, 0.9, 0.9), "a photo of a red circle on a blue background"),
    ((0.5, 0.1, 0.1, 0.1, 0.1, 0.9, 0.9), "a photo of a circle"),
    ((0.5, 0.9, 0.9, 0.1, 0.1, 0.1, 0.1), "a photo of nlwx red circle on a blue background"),
    ((0.5, 0.9, 0.9, 0.9, 0.1, 0.9, 0.1), "a photo of a small nlwx red circle on a blue background"),
    ((0.5, 0.9, 0.9, 0.9, 0.1, 0.1, 0.1), "a photo of nlwx small red circle on a blue background"),
])
def test_caption_dropout_and_filler_words(u, want):
    """Each part is left out by its own draw; a filler word takes the article's place or follows the size."""
    scene = scenes.Scene("circle", "red", "blue", 0.3, 0.3, 0.15, size_word="small", place="top left")
    assert pretrain.caption_for(scene, np.array(u), pretrain.PretrainConfig(), "nlwx") == want


@pytest.fixture(scope="module")
def clip_tokenizer(tmp_path_factory):
    from trainer.clip_tokenizer import write_clip_tokenizer

    return write_clip_tokenizer(tmp_path_factory.mktemp("tokenizer"))


def test_filler_words_leave_out_the_world_and_include_every_identifier(clip_tokenizer):
    """Filler words stand in for the rest of the language: never a caption word, always the identifiers."""
    from storage.subjects import RARE_TOKENS

    fillers = set(pretrain.filler_words(clip_tokenizer))
    world = {w for i in range(400) for w in scenes.caption(scenes.world_scene(0, i)).split()}
    assert not fillers & world and world <= scenes.CAPTION_WORDS
    assert set(RARE_TOKENS) <= fillers
    assert len(fillers) > 10_000


def test_every_filler_word_is_one_token(clip_tokenizer):
    """A filler is one token, as an identifier is: the identity loss tells it back at one position."""
    words = pretrain.filler_words(clip_tokenizer)[::500]
    assert all(len(clip_tokenizer(w).input_ids) == 3 for w in words)


def test_identity_loss_rewards_outputs_that_keep_their_word():
    """Outputs equal to their words' embeddings are told back (loss near 0); outputs that all look alike are not."""
    gen = torch.Generator().manual_seed(0)
    embeddings = torch.randn(50, 8, generator=gen)
    ids = torch.tensor([[0, 5, 7, 9, 1, 1]])  # start, three words, end, padding (the end token)
    probe = torch.nn.Identity()
    kept, told = pretrain.identity_loss(embeddings[ids], ids, embeddings, probe, specials=(0, 1), scale=50.0)
    assert float(told) == 1.0 and float(kept) < 0.01
    same = embeddings[3].expand(1, 6, 8)
    lost, told = pretrain.identity_loss(same, ids, embeddings, probe, specials=(0, 1), scale=50.0)
    assert float(told) <= 1 / 3 and float(lost) > 1.0


def test_to_unit_range():
    assert pretrain.to_unit_range(torch.tensor([0, 255], dtype=torch.uint8)).tolist() == [-1.0, 1.0]


@pytest.mark.slow
def test_short_pretraining_saves_a_small_loadable_model(tiny_model, tmp_path):
    """Two steps per stage: the folder loads like a base model, is under 10 MB, and tokenizes like CLIP."""
    from trainer import models
    from trainer.clip_tokenizer import write_clip_tokenizer

    cfg = pretrain.PretrainConfig(n_scenes=16, n_codec_scenes=8, vae_steps=2, vae_batch=2, decoder_steps=2, unet_steps=2,
                                  unet_batch=2, warmup_steps=0)
    out = pretrain.pretrain(tmp_path / "toy", cfg, init=tiny_model)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    assert size < 10 * 1024 * 1024
    pipe = models.load_pipeline(str(out), models.pick_runtime("cpu"))
    prompt = "a photo of sks circle on a blue background"
    assert pipe.tokenizer(prompt).input_ids == write_clip_tokenizer(tmp_path / "tok")(prompt).input_ids
    assert math.isfinite(pipe.vae.config.scaling_factor) and pipe.vae.config.scaling_factor != 0.18215


@pytest.mark.slow
def test_a_decoder_only_stage_keeps_the_latents_the_unet_knows(tiny_model, tmp_path):
    """--vae-steps 0 --decoder-steps N --unet-steps 0: the encoder, the latent scale, the UNet and the text
    encoder are kept exactly; only the decoder changes, and it reconstructs the world better."""
    from diffusers import StableDiffusionPipeline

    cfg = pretrain.PretrainConfig(n_scenes=32, n_codec_scenes=16, vae_steps=0, vae_batch=4, decoder_steps=30,
                                  decoder_lr=3e-3, unet_steps=0, warmup_steps=0)
    out = pretrain.pretrain(tmp_path / "toy", cfg, init=tiny_model)
    before, after = (StableDiffusionPipeline.from_pretrained(str(d), safety_checker=None).to(torch.float32)
                     for d in (tiny_model, out))
    images, _ = pretrain.render_world(cfg)
    x = pretrain.to_unit_range(images[:8])
    with torch.no_grad():
        z_before, z_after = (p.vae.encode(x).latent_dist.mean for p in (before, after))
        err_before, err_after = ((p.vae.decode(z_before).sample - x).abs().mean() for p in (before, after))
    assert torch.allclose(z_before, z_after, atol=1e-2)  # fp16 on disk
    assert after.vae.config.scaling_factor == before.vae.config.scaling_factor
    for name in ("unet", "text_encoder"):
        for (k, a), b in zip(getattr(before, name).state_dict().items(), getattr(after, name).state_dict().values(),
                             strict=True):
            assert torch.allclose(a.half().float(), b, atol=1e-3), k
    assert err_after < err_before
