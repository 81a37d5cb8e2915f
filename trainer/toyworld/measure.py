"""Does a toy-world model draw what it is asked? Prompted scenes, generated, read back by the classifier.

    python -m trainer.toyworld.measure [--model trainer/toyworld/model] [--n 90] [--n-two-tone 30]

Each prompt names a shape, an object colour and a background ("a photo of a red circle on a blue
background"), and some a size or a place ("a photo of a small red circle in the top left on a blue
background"); the score is the share of samples whose classifier reading matches each part (size
and place over the prompts that name them). Two-tone prompts ("a photo of a red and green square on
a white background") are scored apart: the share of samples that show both colours, the skill a
DreamBooth run on the two-tone subject builds on; and so are pairs ("a photo of a red circle next
to a blue square on a white background"): the share that show both objects, and nothing else.
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
TWO_TONE_SHARE = 0.15  # each of a two-tone prompt's colours covers this share of the object
SIZE_LIMITS = {"small": (0.0, 0.21), "big": (0.27, 1.0)}  # half-widths a named size may read as


@dataclass(frozen=True)
class Accuracy:
    shape: float
    colour: float
    background: float
    all_three: float
    n: int
    size: float | None = None  # over the prompts that name a size
    place: float | None = None  # over the prompts that name a place


def prompted_scenes(n: int, seed: int = PROMPT_SEED) -> list[scenes.Scene]:
    """n one-colour world scenes whose full captions are the prompts; every (shape, colour) pair about equally often."""
    return [scenes.plain_scene(seed, i) for i in range(n)]


def score(readings: list[classifier.Reading], wanted: list[scenes.Scene]) -> Accuracy:
    """The share of readings that match the wanted shape, colour, background, and all three at once."""
    shape = np.array([r.shape == w.shape for r, w in zip(readings, wanted, strict=True)])
    colour = np.array([r.colour == w.colour for r, w in zip(readings, wanted, strict=True)])
    background = np.array([r.background == w.background for r, w in zip(readings, wanted, strict=True)])
    sized = [(r, w) for r, w in zip(readings, wanted, strict=True) if w.size_word and r.main]
    placed = [(r, w) for r, w in zip(readings, wanted, strict=True) if w.place and r.main]
    size = [SIZE_LIMITS[w.size_word][0] <= r.main.radius <= SIZE_LIMITS[w.size_word][1] for r, w in sized]
    place = [(r.main.cx > 0.5, r.main.cy > 0.5) == tuple(bool(q) for q in scenes.PLACES[w.place]) for r, w in placed]
    return Accuracy(float(shape.mean()), float(colour.mean()), float(background.mean()),
                    float((shape & colour & background).mean()), len(wanted),
                    float(np.mean(size)) if size else None, float(np.mean(place)) if place else None)


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
    return all(reading.shares.get(c, 0.0) >= TWO_TONE_SHARE for c in scene.bands)


def two_tone_accuracy(pipe, n: int = 30, *, seed: int = PROMPT_SEED, steps: int = SAMPLE_STEPS,
                      guidance: float = GUIDANCE) -> float:
    """Share of 'a photo of a red and green square on a ...' samples that show both colours."""
    wanted = two_tone_scenes(n, seed)
    images = generate(pipe, [scenes.caption(w) for w in wanted], list(range(n)), steps=steps, guidance=guidance)
    return float(np.mean([shows_both_colours(classifier.read(im), w) for im, w in zip(images, wanted, strict=True)]))


def pair_scenes(n: int, seed: int = PROMPT_SEED) -> list[scenes.Scene]:
    """n scenes of two objects side by side ("a red circle next to a blue square")."""
    rng = np.random.default_rng([seed, 4])
    return [scenes.pair_scene(rng) for _ in range(n)]


def shows_the_pair(reading: classifier.Reading, scene: scenes.Scene) -> bool:
    """Exactly the two objects asked for (shape and colour each), on the background asked for."""
    return (reading.background == scene.background and len(reading.objects) == 2
            and sorted((o.shape, o.colour) for o in reading.objects)
            == sorted((o.shape, o.colour) for o in (scene, scene.other)))


def pair_accuracy(pipe, n: int = 30, *, seed: int = PROMPT_SEED, steps: int = SAMPLE_STEPS,
                  guidance: float = GUIDANCE) -> float:
    """Share of 'a photo of a red circle next to a blue square on a ...' samples that show exactly that."""
    wanted = pair_scenes(n, seed)
    images = generate(pipe, [scenes.caption(w) for w in wanted], list(range(n)), steps=steps, guidance=guidance)
    return float(np.mean([shows_the_pair(classifier.read(im), w) for im, w in zip(images, wanted, strict=True)]))


def main(argv: list[str] | None = None) -> int:
    import dataclasses

    import torch

    from trainer import models

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--n", type=int, default=90)
    parser.add_argument("--n-two-tone", type=int, default=30, help="two-tone prompts (0: skip)")
    parser.add_argument("--n-pairs", type=int, default=30, help="two-object prompts (0: skip)")
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
    if args.n_pairs:
        figures["pairs_right"] = pair_accuracy(pipe, args.n_pairs, steps=args.steps, guidance=args.guidance)
    print(json.dumps(figures))
    if args.grid:
        from PIL import Image

        from trainer.generate import save_grid

        save_grid([Image.fromarray(im) for im in images], cols=10, path=args.grid)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
