"""Settings of an evaluation run: a plain dataclass, so the command line can read its defaults without torch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EvalConfig:
    dino_model: str = "facebook/dino-vits16"  # DINO ViT-S/16, as in the paper: hub id or local folder
    clip_model: str = "openai/clip-vit-base-patch32"  # CLIP ViT-B/32, as in the paper: hub id or local folder
    images_per_prompt: int = 4  # the paper generates 4 per prompt (25 x 4 = 100 per subject)
    seed: int = 0  # image j of every prompt uses seed + j
    steps: int = 25  # sampler steps
    guidance: float = 7.5  # classifier-free guidance
    with_class_prompts: bool = True  # also generate the class prompts, for PRES
    prior_images: int = 8  # class images (the prior) scored for DIV; 0 skips it (see trainer/eval/prior.py)
