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


# alphas_cumprod 0.5, 0.9, 0.2 have SNR a / (1 - a) = 1, 9, 0.25; with gamma 5 min(SNR, 5) = 1, 5, 0.25
@pytest.mark.parametrize(("prediction_type", "expected"), [
    ("sample", [1.0, 5.0, 0.25]),  # min(SNR, gamma)
    ("epsilon", [1.0, 5.0 / 9.0, 1.0]),  # min(SNR, gamma) / SNR
    ("v_prediction", [0.5, 0.5, 0.2]),  # min(SNR, gamma) / (SNR + 1)
])
def test_min_snr_weights_by_hand(prediction_type, expected):
    """Each prediction type's Min-SNR-5 weights equal the paper's formula worked by hand."""
    w = min_snr_weights(torch.tensor([0, 1, 2]), torch.tensor([0.5, 0.9, 0.2]), gamma=5.0,
                        prediction_type=prediction_type)
    torch.testing.assert_close(w, torch.tensor(expected))


def test_min_snr_weighted_losses_agree_on_the_x0_scale(scheduler):
    """One prediction, read as x_0, epsilon or v, gives the same Min-SNR-weighted loss whatever the target.

    Hang et al. 2023: the epsilon MSE is SNR x the x_0 MSE and the v MSE (SNR + 1) x it, so the weights undo that.
    """
    g = torch.Generator().manual_seed(0)
    x0, noise, pred_x0 = (torch.randn(4, 4, 3, 3, generator=g) for _ in range(3))
    t = torch.tensor([5, 200, 600, 990])
    a = scheduler.alphas_cumprod[t].reshape(-1, 1, 1, 1)
    noisy = add_noise(x0, noise, t, scheduler.alphas_cumprod)
    pred_eps = (noisy - a.sqrt() * pred_x0) / (1 - a).sqrt()  # the same prediction in each parameterisation
    preds = {"sample": pred_x0, "epsilon": pred_eps, "v_prediction": a.sqrt() * pred_eps - (1 - a).sqrt() * pred_x0}
    losses = {}
    for kind, pred in preds.items():
        target = diffusion_target(noise, x0, t, prediction_type=kind, alphas_cumprod=scheduler.alphas_cumprod)
        weights = min_snr_weights(t, scheduler.alphas_cumprod, gamma=5.0, prediction_type=kind)
        losses[kind] = prior_preservation_loss(pred, target, 4, 1.0, weights).total.item()
    assert losses["epsilon"] == pytest.approx(losses["sample"], rel=1e-4)
    assert losses["v_prediction"] == pytest.approx(losses["sample"], rel=1e-4)


def test_min_snr_weights_refuse_an_unknown_prediction_type(scheduler):
    """A prediction type with no Min-SNR weighting is an error that names the ones there are."""
    with pytest.raises(ValueError, match="epsilon, v_prediction, sample"):
        min_snr_weights(torch.tensor([1]), scheduler.alphas_cumprod, gamma=5.0, prediction_type="flow")


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
