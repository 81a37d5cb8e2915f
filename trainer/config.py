"""TrainConfig: every value one training run uses, resolved once from the settings, a preset and the job.

A user picks a preset (quick, balanced, faces), not raw hyper-parameters. The resolved config is
kept on the job row as JSON and saved beside the LoRA weights, so a result always says exactly
how it was made.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from trainer.errors import InputError

EVAL_PROMPTS = (
    "{subject} as a superhero",
    "a painting of {subject} in Van Gogh style",
    "a photo of {subject} wearing a tuxedo",
    "a photo of {subject} in ancient Rome",
)


@dataclass(frozen=True)
class TrainConfig:
    # what is learned
    base_model: str = "stable-diffusion-v1-5/stable-diffusion-v1-5"  # hub id, diffusers folder or single file
    token: str = "sks"  # rare identifier token bound to the subject (storage picks one per subject)
    class_noun: str = "dog"  # what the subject is; the class prompt keeps the model's prior for it
    preset: str = "balanced"  # the preset these values came from
    # optimisation (from the preset)
    steps: int = 800  # optimizer steps
    learning_rate: float = 1e-4  # peak learning rate
    rank: int = 16  # LoRA rank
    alpha: float = 16.0  # LoRA alpha; the update is scaled by alpha / rank
    train_text_encoder: bool = False  # also learn a LoRA on the text encoder (faces benefit)
    # optimisation (fixed, but for the batch, which is a trainer setting)
    batch_size: int = 1  # instance examples per step; as many class examples join them
    lr_schedule: str = "cosine"  # "cosine" or "constant", after warmup
    warmup_steps: int = 20  # linear warmup from 0; capped at a tenth of the run
    min_lr_ratio: float = 0.1  # cosine decays to learning_rate * this
    weight_decay: float = 1e-2  # AdamW decoupled weight decay on the LoRA weights
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW moments
    eps: float = 1e-8  # AdamW epsilon
    max_grad_norm: float = 1.0  # gradient clipping
    optimizer: str = "adamw"  # "adamw" or "adamw8bit" (bitsandbytes, CUDA only)
    gradient_checkpointing: bool = False  # recompute UNet activations: less memory, ~30% slower
    compile_unet: bool = False  # torch.compile the UNet's training step: a slow first step, faster ones after
    snr_gamma: float | None = None  # Min-SNR loss weighting (Hang et al. 2023); None turns it off
    noise_offset: float = 0.0  # kohya's offset noise: helps very dark or bright images; 0 is off
    flip: bool = True  # also train on horizontally mirrored copies of every image
    seed: int = 0  # seeds torch, numpy and python, the noise and the sample grids
    # prior preservation
    class_images: int = 100  # generated class images; 0 turns prior preservation off
    prior_loss_weight: float = 1.0  # weight of the class examples' loss
    # images
    resolution: int = 512  # training and sample size in pixels
    sample_steps: int = 25  # sampler steps for class images and sample grids
    guidance_scale: float = 7.5  # classifier-free guidance for class images and sample grids
    sample_seeds: tuple[int, ...] = (0, 1)  # one grid column per seed
    eval_prompts: tuple[str, ...] = EVAL_PROMPTS  # grid rows after the instance prompt
    # bookkeeping
    checkpoint_every: int = 100  # steps between checkpoints and sample grids
    keep_checkpoints: int = 3  # newest checkpoints kept on disk
    device: str = "auto"  # auto, cuda or cpu
    mixed_precision: str = "bf16"  # frozen base weights on CUDA: bf16, fp16 or no

    @property
    def subject(self) -> str:
        return f"{self.token} {self.class_noun}"

    @property
    def instance_prompt(self) -> str:
        return f"a photo of {self.subject}"

    @property
    def class_prompt(self) -> str:
        return f"a photo of a {self.class_noun}"

    @property
    def prior_preservation(self) -> bool:
        return self.class_images > 0 and self.prior_loss_weight > 0

    def sample_prompts(self) -> list[str]:
        return [self.instance_prompt, *(p.format(subject=self.subject) for p in self.eval_prompts)]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known}
        return cls(**data)


def resolve(settings, params: dict[str, Any], *, token: str, class_noun: str) -> TrainConfig:
    """TrainConfig from storage.config.TrainerSettings and a train job's params {preset, steps, model}."""
    name = params.get("preset") or settings.default_preset
    if name not in settings.presets:
        raise InputError(f"There is no preset called {name!r}: choose one of {', '.join(sorted(settings.presets))}.")
    preset = settings.presets[name]
    steps = preset.steps if params.get("steps") is None else params["steps"]
    if not isinstance(steps, int) or not 1 <= steps <= 20_000:
        raise InputError(f"steps must be a whole number from 1 to 20000, not {steps!r}.")
    return TrainConfig(
        base_model=params.get("model") or settings.base_model, token=token, class_noun=class_noun, preset=name,
        steps=steps, learning_rate=preset.learning_rate * settings.learning_rate_scale,
        rank=preset.rank, alpha=float(preset.alpha), train_text_encoder=preset.train_text_encoder,
        batch_size=settings.batch_size, noise_offset=settings.noise_offset, class_images=settings.class_images,
        prior_loss_weight=settings.prior_loss_weight, resolution=settings.resolution,
        sample_steps=settings.sample_steps, guidance_scale=settings.guidance_scale,
        checkpoint_every=min(settings.checkpoint_every, steps), keep_checkpoints=settings.keep_checkpoints,
        device=settings.device, mixed_precision=settings.mixed_precision, compile_unet=settings.compile_unet)
