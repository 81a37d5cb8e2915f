"""Does a toy-world model draw what it is asked? Prompted scenes, generated, read back by the classifier.

    python -m trainer.toyworld.measure [--model trainer/toyworld/model] [--n 90] [--n-two-tone 30]

Each prompt names a shape, an object colour and a background ("a photo of a red circle on a blue
background"); the score is the share of samples whose classifier reading matches each part. Two-tone
prompts ("a photo of a red and green square on a white background") are scored apart: the share of
samples that show both colours, the skill a DreamBooth run on the two-tone subject builds on.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainer.toyworld import classifier, scenes

DEFAULT_MODEL = Path(__file__).parent / "model"
SAMPLE_STEPS = 25
GUIDANCE = 7.5
PROMPT_SEED = 12345  # the prompted scenes come from their own draw, not the pretraining set's


@dataclass(frozen=True)
class Accuracy:
    shape: float
    colour: float
    background: float
    all_three: float
    n: int


def prompted_scenes(n: int, seed: int = PROMPT_SEED) -> list[scenes.Scene]:
    """n one-colour world scenes whose full captions are the prompts; every (shape, colour) pair about equally often."""
    return [scenes.plain_scene(seed, i) for i in range(n)]


def score(readings: list[classifier.Reading], wanted: list[scenes.Scene]) -> Accuracy:
    """The share of readings that match the wanted shape, colour, background, and all three at once."""
    shape = np.array([r.shape == w.shape for r, w in zip(readings, wanted, strict=True)])
    colour = np.array([r.colour == w.colour for r, w in zip(readings, wanted, strict=True)])
    background = np.array([r.background == w.background for r, w in zip(readings, wanted, strict=True)])
    return Accuracy(float(shape.mean()), float(colour.mean()), float(background.mean()),
                    float((shape & colour & background).mean()), len(wanted))


def generate(pipe, prompts: list[str], seeds: list[int], *, steps: int = SAMPLE_STEPS,
             guidance: float = GUIDANCE) -> list[np.ndarray]:
    """One image per (prompt, seed) pair, as [64, 64, 3] uint8 arrays, through the trainer's renderer."""
    from trainer.generate import render

    images = []
    for prompt, seed in zip(prompts, seeds, strict=True):
        images += render(pipe, [prompt], seeds=[seed], steps=steps, guidance=guidance,
                         resolution=scenes.RESOLUTION)
    return [scenes.to_array(im) for im in images]


def prompt_accuracy(pipe, n: int = 90, *, seed: int = PROMPT_SEED, steps: int = SAMPLE_STEPS,
                    guidance: float = GUIDANCE) -> tuple[Accuracy, list[np.ndarray]]:
    """The model's accuracy on n prompted scenes, and the images."""
    wanted = prompted_scenes(n, seed)
    images = generate(pipe, [scenes.caption(w) for w in wanted], list(range(n)), steps=steps, guidance=guidance)
    return score([classifier.read(im) for im in images], wanted), images


def two_tone_scenes(n: int, seed: int = PROMPT_SEED) -> list[scenes.Scene]:
    """n two-tone world scenes (never the subject's colour pair) whose full captions are the prompts."""
    rng = np.random.default_rng([seed, 2])
    return [scenes.two_tone_scene(rng) for _ in range(n)]


def shows_both_colours(reading: classifier.Reading, scene: scenes.Scene) -> bool:
    """Each of the two requested colours covers a good share of the object, as the subject test asks of its own."""
    return all(reading.shares.get(c, 0.0) >= classifier.BAND_SHARE for c in scene.bands)


def two_tone_accuracy(pipe, n: int = 30, *, seed: int = PROMPT_SEED, steps: int = SAMPLE_STEPS,
                      guidance: float = GUIDANCE) -> float:
    """Share of 'a photo of a red and green square on a ...' samples that show both colours."""
    wanted = two_tone_scenes(n, seed)
    images = generate(pipe, [scenes.caption(w) for w in wanted], list(range(n)), steps=steps, guidance=guidance)
    return float(np.mean([shows_both_colours(classifier.read(im), w) for im, w in zip(images, wanted, strict=True)]))


def main(argv: list[str] | None = None) -> int:
    import dataclasses

    import torch

    from trainer import models

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--n", type=int, default=90)
    parser.add_argument("--n-two-tone", type=int, default=30, help="two-tone prompts (0: skip)")
    parser.add_argument("--steps", type=int, default=SAMPLE_STEPS)
    parser.add_argument("--guidance", type=float, default=GUIDANCE)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--grid", type=Path, help="save the samples as a grid here")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    pipe = models.load_pipeline(args.model, models.pick_runtime(args.device, "no"))
    acc, images = prompt_accuracy(pipe, args.n, steps=args.steps, guidance=args.guidance)
    figures = dataclasses.asdict(acc)
    if args.n_two_tone:
        figures["two_tone_both_colours"] = two_tone_accuracy(pipe, args.n_two_tone, steps=args.steps,
                                                             guidance=args.guidance)
    print(json.dumps(figures))
    if args.grid:
        from PIL import Image

        from trainer.generate import save_grid

        save_grid([Image.fromarray(im) for im in images], cols=10, path=args.grid)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
