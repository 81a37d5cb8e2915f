"""How well a DreamBooth run on the toy world went, in three numbers read by the code-only classifier.

    subject fidelity  share of identifier-prompt samples ("a photo of sks circle on a red
                      background") that show the subject's yellow and black;
    prompt fidelity   share of the same samples whose background is the colour asked for;
    class collapse    share of class-prompt samples ("a photo of a circle") that show yellow and black:
                      the class forgot what plain circles look like and became the subject.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trainer.toyworld import classifier, scenes, subject


@dataclass(frozen=True)
class Quality:
    subject_fidelity: float
    prompt_fidelity: float
    class_collapse: float
    n_subject: int
    n_class: int


def subject_fidelity(readings: list[classifier.Reading]) -> float:
    return float(np.mean([r.subject_pattern for r in readings]))


def prompt_fidelity(readings: list[classifier.Reading], backgrounds: list[str]) -> float:
    return float(np.mean([r.background == b for r, b in zip(readings, backgrounds, strict=True)]))


def class_collapse(readings: list[classifier.Reading]) -> float:
    return float(np.mean([r.subject_pattern for r in readings]))


def score(subject_readings: list[classifier.Reading], backgrounds: list[str],
          class_readings: list[classifier.Reading]) -> Quality:
    return Quality(subject_fidelity(subject_readings), prompt_fidelity(subject_readings, backgrounds),
                   class_collapse(class_readings), len(subject_readings), len(class_readings))


def measure(generator, adapter_dir, token: str, *, seeds_per_prompt: int = 8, steps: int = 25,
            guidance: float = 7.5, seed: int = 0) -> tuple[Quality, list, list]:
    """Generate with the subject's adapter active (trainer.generate.ImageGenerator), read, score.

    Returns the Quality and the subject and class images (PIL), for grids.
    """
    adapters = [("toy_subject", adapter_dir)]
    backgrounds, subject_images = [], []
    for bg in scenes.SUBJECT_BACKGROUNDS:
        made = generator.generate(subject.subject_prompt(token, bg), adapters, n=seeds_per_prompt, seed=seed,
                                  steps=steps, guidance=guidance, resolution=scenes.RESOLUTION)
        subject_images += made.images
        backgrounds += [bg] * seeds_per_prompt
    class_images = []
    for start in range(0, 2 * seeds_per_prompt, 16):  # as many class samples as two prompts' worth
        made = generator.generate(subject.class_prompt(), adapters, n=min(16, 2 * seeds_per_prompt - start),
                                  seed=seed + start, steps=steps, guidance=guidance, resolution=scenes.RESOLUTION)
        class_images += made.images
    read = lambda ims: [classifier.read(scenes.to_array(im)) for im in ims]  # noqa: E731
    return score(read(subject_images), backgrounds, read(class_images)), subject_images, class_images
