"""TrainConfig: every value one training run uses, resolved once from the settings, the base model's family,
a preset and the job. Trainer settings are declared in storage/config.py alone; TrainConfig takes them by name.

A user picks a preset (quick, balanced, faces), not raw hyper-parameters. The resolved config is
kept on the job row as JSON and saved beside the LoRA weights, so a result always says exactly
how it was made.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from storage.config import TrainerSettings, compile_mode
from trainer.errors import InputError

EVAL_PROMPTS = (
    "{subject} as a superhero",
    "a painting of {subject} in Van Gogh style",
    "a photo of {subject} wearing a tuxedo",
    "a photo of {subject} in ancient Rome",
)


def _setting(name: str):
    """A TrainConfig field that is a trainer setting: default and meaning are declared in TrainerSettings."""
    declared = next(f for f in dataclasses.fields(TrainerSettings) if f.name == name)
    return field(default=declared.default, metadata={"setting": name})


SD1 = TrainerSettings().families["sd1"]


@dataclass(frozen=True)
class TrainConfig:
    """One run's values. Fields made with `_setting` are the trainer settings of the same name (see
    storage/config.py for what they mean); `resolve` copies them over by name."""

    # what is learned
    base_model: str = _setting("base_model")  # the job may name another model
    base_weights: str = ""  # the base model's content fingerprint (models.fingerprint), when the worker knows it
    family: str = "sd1"  # the base model's family (storage.model_families): chooses resolution and presets
    token: str = "sks"  # rare identifier token bound to the subject (storage picks one per subject)
    class_noun: str = "dog"  # what the subject is; the class prompt keeps the model's prior for it
    preset: str = "balanced"  # the preset these values came from
    # optimisation (from the preset, for the family)
    steps: int = 800  # optimizer steps
    learning_rate: float = 1e-4  # peak learning rate (the preset's, times trainer.learning_rate_scale)
    rank: int = 16  # LoRA rank
    alpha: float = 16.0  # LoRA alpha; the update is scaled by alpha / rank
    train_text_encoder: bool = False  # also learn a LoRA on the text encoder (faces benefit)
    # optimisation (fixed, but for the memory plan: trainer.memory)
    batch_size: int = _setting("batch_size")  # instance examples per step; as many class examples join them
    lr_schedule: str = "cosine"  # "cosine" or "constant", after warmup
    warmup_steps: int = 20  # linear warmup from 0; capped at a tenth of the run
    min_lr_ratio: float = 0.1  # cosine decays to learning_rate * this
    weight_decay: float = 1e-2  # AdamW decoupled weight decay on the LoRA weights
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW moments
    eps: float = 1e-8  # AdamW epsilon
    max_grad_norm: float = 1.0  # gradient clipping
    optimizer: str = "adamw"  # "adamw" or "adamw8bit" (bitsandbytes, CUDA only)
    gradient_checkpointing: bool = False  # recompute UNet activations: less memory, ~30% slower
    compile_unet: str = _setting("compile_unet")  # "off", "default" or "reduce-overhead" (true/false still read)
    channels_last: bool = True  # on CUDA: the UNet's weights in channels-last layout (tensor-core convolutions)
    snr_gamma: float | None = _setting("snr_gamma")  # Min-SNR-gamma loss weighting; 0 (or None, in old configs) is off
    noise_offset: float = _setting("noise_offset")
    flip: bool = True  # also train on horizontally mirrored copies of every image (the preset's; faces: off)
    crops_per_photo: int = _setting("crops_per_photo")  # cached views of each photo: the centre crop, then random ones
    seed: int = _setting("seed")  # seeds torch, numpy and python, the noise, crops and the sample grids
    # prior preservation
    class_images: int = _setting("class_images")  # 0 turns prior preservation off
    prior_loss_weight: float = _setting("prior_loss_weight")
    # images
    resolution: int = SD1.resolution  # training and sample size in pixels (trainer.resolution, else the family's)
    sample_steps: int = _setting("sample_steps")
    guidance_scale: float = _setting("guidance_scale")
    sample_seeds: tuple[int, ...] = (0, 1)  # one grid column per seed
    eval_prompts: tuple[str, ...] = EVAL_PROMPTS  # grid rows after the instance prompt
    grid_every: int = _setting("grid_every")  # progress grids at the checkpoints whose step is a multiple; 0: none
    grid_images: int = _setting("grid_images")
    grid_steps: int = _setting("grid_steps")  # 0: sample_steps
    grid_resolution: int = _setting("grid_resolution")  # 0: half the resolution
    final_grid_images: int = _setting("final_grid_images")
    final_grid_steps: int = _setting("final_grid_steps")  # 0: sample_steps
    final_grid_resolution: int = _setting("final_grid_resolution")  # 0: resolution
    # bookkeeping
    checkpoint_every: int = _setting("checkpoint_every")  # at most the run's steps
    keep_checkpoints: int = _setting("keep_checkpoints")
    device: str = _setting("device")
    mixed_precision: str = _setting("mixed_precision")

    def __post_init__(self):
        # A config saved before compile_unet took a mode says true or false: read it as "default" or "off".
        object.__setattr__(self, "compile_unet", compile_mode(self.compile_unet))

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

    def grid_layout(self, *, final: bool = False) -> tuple[list[str], tuple[int, ...]]:
        """A sample grid's prompts (rows) and seeds (columns), from grid_images (final: final_grid_images) tiles.

        Up to one tile per seed: the instance prompt alone at that many seeds (progress shows the subject).
        More: one row per prompt, the instance prompt first, at as many seeds as fill whole rows (the final grid
        shows the subject in other settings too); rounded down to whole rows.
        """
        images = max(1, self.final_grid_images if final else self.grid_images)
        if images <= len(self.sample_seeds):
            return self.sample_prompts()[:1], self.sample_seeds[:images]
        prompts = self.sample_prompts()[:images]
        return prompts, self.sample_seeds[:images // len(prompts)]

    def grid_size(self, *, final: bool = False) -> tuple[int, int]:
        """(sampler steps, pixel size) of a progress grid's images, or the final grid's."""
        steps = (self.final_grid_steps if final else self.grid_steps) or self.sample_steps
        if final:
            return steps, self.final_grid_resolution or self.resolution
        return steps, self.grid_resolution or max(8, self.resolution // 2 // 8 * 8)

    def draws_grid(self, step: int) -> bool:
        """Whether the checkpoint at `step` draws a sample grid: the final one always, others every grid_every."""
        return step == self.steps or (self.grid_every > 0 and step % self.grid_every == 0)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        data = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known}
        return cls(**data)


def resolve(settings: TrainerSettings, params: dict[str, Any], *, token: str, class_noun: str,
            family: str = "sd1") -> TrainConfig:
    """TrainConfig from the trainer settings, the base model's family and a train job's params {preset, steps, model}.

    The family (storage.model_families.detect(...).name) chooses the resolution, unless trainer.resolution sets
    one, and may replace the preset with its own ([trainer.families.<family>.presets]).
    """
    name = params.get("preset") or settings.default_preset
    if name not in settings.presets:
        raise InputError(f"There is no preset called {name!r}: choose one of {', '.join(sorted(settings.presets))}.")
    family_settings = family_for(settings, family)
    preset = family_settings.presets.get(name) or settings.presets[name]
    steps = preset.steps if params.get("steps") is None else params["steps"]
    if not isinstance(steps, int) or not 1 <= steps <= 20_000:
        raise InputError(f"steps must be a whole number from 1 to 20000, not {steps!r}.")
    from_settings = {f.name: getattr(settings, f.metadata["setting"]) for f in dataclasses.fields(TrainConfig)
                     if "setting" in f.metadata}
    return TrainConfig(**{
        **from_settings, "base_model": params.get("model") or settings.base_model, "family": family,
        "token": token, "class_noun": class_noun, "preset": name, "steps": steps,
        "learning_rate": preset.learning_rate * settings.learning_rate_scale, "rank": preset.rank,
        "alpha": float(preset.alpha), "train_text_encoder": preset.train_text_encoder, "flip": preset.flip,
        "resolution": settings.resolution or family_settings.resolution,
        "checkpoint_every": min(settings.checkpoint_every, steps)})


def family_for(settings: TrainerSettings, family: str):
    """The [trainer.families] table for `family`; one missing from the settings keeps its declared default."""
    return settings.families.get(family) or TrainerSettings().families.get(family) or SD1


def resolution_for(settings: TrainerSettings, family: str = "sd1") -> int:
    """The training and generation size for a base model of this family: trainer.resolution, else the family's."""
    return settings.resolution or family_for(settings, family).resolution
