"""Pure training math on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import DDPMScheduler

from trainer.config import TrainConfig
from trainer.losses import add_noise, diffusion_target, lr_at, min_snr_weights, prior_preservation_loss


@pytest.fixture
def scheduler():
    return DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)


def test_prior_loss_matches_hand_computation():
    """Instance MSE plus weight x class MSE on a fused batch, instance rows first."""
    pred = torch.tensor([[1.0, 2.0], [0.0, 0.0], [3.0, 3.0]])
    target = torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, 3.0]])
    # instance row 0: (1 + 4) / 2 = 2.5; class rows 1, 2: (1 + 1) / 2 = 1, (4 + 0) / 2 = 2 -> mean 1.5
    loss = prior_preservation_loss(pred, target, n_instance=1, prior_weight=0.5)
    assert loss.instance.item() == pytest.approx(2.5)
    assert loss.prior.item() == pytest.approx(1.5)
    assert loss.total.item() == pytest.approx(2.5 + 0.5 * 1.5)


def test_prior_loss_without_class_rows_is_instance_loss():
    """With no class examples the prior term is zero."""
    pred, target = torch.ones(2, 3), torch.zeros(2, 3)
    loss = prior_preservation_loss(pred, target, n_instance=2, prior_weight=1.0)
    assert loss.total.item() == pytest.approx(1.0) and loss.prior.item() == 0.0


def test_prior_loss_row_weights_scale_rows():
    """Per-row weights (Min-SNR) multiply each row's error."""
    pred, target = torch.ones(2, 4), torch.zeros(2, 4)
    loss = prior_preservation_loss(pred, target, 1, 1.0, weights=torch.tensor([0.5, 2.0]))
    assert loss.total.item() == pytest.approx(2.5)


def test_v_prediction_target_equals_get_velocity(scheduler):
    """The v target is DDPMScheduler.get_velocity(latents, noise, t)."""
    g = torch.Generator().manual_seed(0)
    latents, noise = torch.randn(3, 4, 2, 2, generator=g), torch.randn(3, 4, 2, 2, generator=g)
    t = torch.tensor([0, 500, 999])
    ours = diffusion_target(noise, latents, t, prediction_type="v_prediction", alphas_cumprod=scheduler.alphas_cumprod)
    torch.testing.assert_close(ours, scheduler.get_velocity(latents, noise, t))


def test_epsilon_target_is_the_noise(scheduler):
    """An epsilon model learns to predict the noise itself."""
    noise = torch.randn(2, 4, 2, 2)
    out = diffusion_target(noise, torch.zeros_like(noise), torch.tensor([1, 2]), prediction_type="epsilon",
                           alphas_cumprod=scheduler.alphas_cumprod)
    assert out is noise


def test_add_noise_equals_scheduler(scheduler):
    """Noising matches DDPMScheduler.add_noise."""
    g = torch.Generator().manual_seed(1)
    latents, noise = torch.randn(2, 4, 3, 3, generator=g), torch.randn(2, 4, 3, 3, generator=g)
    t = torch.tensor([10, 900])
    torch.testing.assert_close(add_noise(latents, noise, t, scheduler.alphas_cumprod),
                               scheduler.add_noise(latents, noise, t))


def test_min_snr_weights_cap_high_snr(scheduler):
    """Min-SNR-5 weights are min(snr, 5) / snr for epsilon models."""
    t = torch.tensor([0, 999])
    snr = scheduler.alphas_cumprod[t] / (1 - scheduler.alphas_cumprod[t])
    w = min_snr_weights(t, scheduler.alphas_cumprod, gamma=5.0, prediction_type="epsilon")
    torch.testing.assert_close(w, torch.clamp(snr, max=5.0) / snr)


@pytest.mark.parametrize(("step", "schedule", "expected"), [
    (0, "cosine", 1e-4 / 10),  # warmup: 10 steps (a tenth of 100), linear from the first step
    (9, "cosine", 1e-4),  # end of warmup
    (10, "cosine", 1e-4),  # cosine starts at the peak
    (99, "cosine", 1e-5),  # and ends at min_lr_ratio x peak
    (50, "constant", 1e-4),
])
def test_lr_schedule(step, schedule, expected):
    """Linear warmup, then cosine down to the floor, or constant."""
    cfg = TrainConfig(steps=100, learning_rate=1e-4, warmup_steps=20, lr_schedule=schedule, min_lr_ratio=0.1)
    assert lr_at(step, cfg) == pytest.approx(expected)


def test_lr_schedule_is_halfway_at_midpoint():
    """Cosine is halfway between peak and floor halfway through the decay."""
    cfg = TrainConfig(steps=101, learning_rate=1.0, warmup_steps=0, min_lr_ratio=0.0)
    assert lr_at(50, cfg) == pytest.approx(0.5)
    assert not math.isnan(lr_at(0, TrainConfig(steps=1, warmup_steps=0)))
