"""The training math as pure functions: tensors and numbers in, tensors or numbers out.

Same formulas as diffusers' DDPMScheduler (`add_noise`, `get_velocity`) and training_utils
(`compute_snr`), written against a plain `alphas_cumprod` tensor so they test alone.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F


def _per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """values[b] broadcast over the non-batch dims of `like`."""
    return values.to(device=like.device, dtype=like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


def add_noise(latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor,
              alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """q(x_t | x_0): sqrt(a_t) x_0 + sqrt(1 - a_t) noise (DDPMScheduler.add_noise)."""
    a = alphas_cumprod.to(latents.device)[timesteps]
    return _per_sample(a.sqrt(), latents) * latents + _per_sample((1 - a).sqrt(), latents) * noise


def diffusion_target(noise: torch.Tensor, latents: torch.Tensor, timesteps: torch.Tensor, *,
                     prediction_type: str, alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """What the UNet should output: the noise (epsilon), the velocity (v_prediction) or x_0 (sample)."""
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        a = alphas_cumprod.to(latents.device)[timesteps]
        return _per_sample(a.sqrt(), latents) * noise - _per_sample((1 - a).sqrt(), latents) * latents
    if prediction_type == "sample":
        return latents
    raise ValueError(f"unknown prediction_type {prediction_type!r}")


PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")


def min_snr_weights(timesteps: torch.Tensor, alphas_cumprod: torch.Tensor, *, gamma: float,
                    prediction_type: str) -> torch.Tensor:
    """Per-sample Min-SNR-gamma loss weights (Hang et al. 2023) for the MSE against `prediction_type`'s target.

    The paper weights the x_0 error by min(SNR, gamma). The epsilon error is SNR x the x_0 error and the
    velocity error (SNR + 1) x it, so their weights divide by those factors: all three give the same loss.
    """
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"unknown prediction_type {prediction_type!r}: Min-SNR weights exist for "
                         f"{', '.join(PREDICTION_TYPES)}")
    a = alphas_cumprod.to(timesteps.device)[timesteps].float()
    snr = a / (1 - a)
    clipped = torch.clamp(snr, max=gamma)
    if prediction_type == "sample":
        return clipped
    return clipped / (snr + 1) if prediction_type == "v_prediction" else clipped / snr


class Loss(NamedTuple):
    total: torch.Tensor  # what is backpropagated
    instance: torch.Tensor  # mean squared error on the subject's photos
    prior: torch.Tensor  # mean squared error on the class images (0 without prior preservation)


def prior_preservation_loss(pred: torch.Tensor, target: torch.Tensor, n_instance: int, prior_weight: float,
                            weights: torch.Tensor | None = None) -> Loss:
    """MSE on the instance rows plus prior_weight x MSE on the class rows of one fused batch.

    The batch holds the instance examples first and the class examples after, so one UNet call
    serves both (DreamBooth, section 4.2). `weights` optionally scales each row's error.
    """
    per_row = F.mse_loss(pred.float(), target.float(), reduction="none").flatten(1).mean(1)
    if weights is not None:
        per_row = per_row * weights.to(per_row)
    instance = per_row[:n_instance].mean()
    if n_instance == per_row.shape[0]:
        prior = torch.zeros((), device=per_row.device)
    else:
        prior = per_row[n_instance:].mean()
    return Loss(instance + prior_weight * prior, instance.detach(), prior.detach())


def lr_at(step: int, cfg) -> float:
    """Learning rate for optimizer step `step` (0-based): linear warmup, then cosine to a floor or constant.

    `cfg` needs learning_rate, steps, warmup_steps, lr_schedule and min_lr_ratio (a TrainConfig).
    """
    warmup = min(cfg.warmup_steps, cfg.steps // 10)
    if step < warmup:
        return cfg.learning_rate * (step + 1) / warmup
    if cfg.lr_schedule == "constant":
        return cfg.learning_rate
    if cfg.lr_schedule != "cosine":
        raise ValueError(f"unknown lr_schedule {cfg.lr_schedule!r}")
    progress = (step - warmup) / max(1, cfg.steps - warmup - 1)
    floor = cfg.learning_rate * cfg.min_lr_ratio
    return floor + 0.5 * (1 + math.cos(math.pi * min(1.0, progress))) * (cfg.learning_rate - floor)
