"""How well a DreamBooth run on the toy world went, per context, read by the code-only classifier.

    subject fidelity  share of identifier-prompt samples ("a photo of sks circle on a purple
                      background") that show the subject, strictly (contexts.Context.subject_right);
    prompt fidelity   share of the same samples in which the rest of the prompt is right (the
                      background; the place, the size, the neighbour where asked);
    class collapse    share of class-prompt samples ("a photo of a circle") that show the subject:
                      the class forgot what plain circles look like and became the subject;
    copies            share of identifier-prompt samples within memorization.COPY_DISTANCE of a
                      training photo (or its mirror image): replayed, not drawn.
Each context gets its own figures; the held-out contexts are also pooled, with a 95% Wilson
interval on the pooled subject fidelity. `base_rates` measures the base model (no adapter) on each
context's class prompt: the share of samples that show a circle in the context asked for, the
most a run can be expected to reach.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from trainer.toyworld import classifier, memorization, scenes, subject
from trainer.toyworld.contexts import CONTEXTS, Context

BATCH = 16  # images per generator call (its most)


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval for k successes in n trials (95% for z = 1.96)."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class ContextFigures:
    heldout: bool
    n: int
    subject: int  # samples showing the subject
    prompt: int  # samples in which the rest of the prompt is right
    copies: int  # samples within COPY_DISTANCE of a training photo
    position_spread: float  # px, of the subject's centres
    base_rate: float | None = None  # the base model's rate on this context's class prompt

    def as_dict(self) -> dict:
        low, high = wilson(self.subject, self.n)
        out = {"heldout": self.heldout, "n": self.n, "subject_fidelity": self.subject / self.n,
               "subject_fidelity_low": low, "subject_fidelity_high": high, "prompt_fidelity": self.prompt / self.n,
               "copies": self.copies / self.n, "position_spread_px": round(self.position_spread, 2)}
        if self.base_rate is not None:
            out["base_rate"] = self.base_rate
        return out


@dataclass
class Measured:
    contexts: dict[str, ContextFigures]
    class_subject: int
    n_class: int
    images: dict[str, list] = field(default_factory=dict)  # context name (and "class") -> PIL images

    def pooled(self, heldout: bool) -> dict:
        figs = [f for f in self.contexts.values() if f.heldout == heldout]
        n, k, p = sum(f.n for f in figs), sum(f.subject for f in figs), sum(f.prompt for f in figs)
        low, high = wilson(k, n)
        return {"n": n, "subject_fidelity": k / max(n, 1), "subject_fidelity_low": low,
                "subject_fidelity_high": high, "prompt_fidelity": p / max(n, 1)}

    @property
    def class_collapse(self) -> float:
        return self.class_subject / self.n_class

    @property
    def copies(self) -> float:
        return sum(f.copies for f in self.contexts.values()) / max(sum(f.n for f in self.contexts.values()), 1)

    def as_dict(self) -> dict:
        return {"contexts": {name: f.as_dict() for name, f in self.contexts.items()},
                "heldout": self.pooled(True), "training": self.pooled(False),
                "class_collapse": self.class_collapse, "n_class": self.n_class, "copies": self.copies}


def photo_references(photo_files: list | None = None, *, views: int = 1, seed: int = 0) -> np.ndarray:
    """The subject's training images as the trainer sees them (64 px), and their mirror images: each photo's
    centre crop, or with `photo_files` the `views` views per photo the trainer cached for training seed `seed`
    (trainer.data.prepare's draw), so that a sample replaying a zoomed-in view counts as a copy too."""
    if photo_files is None:
        return memorization.references([scenes.to_array(scenes.render(s)) for s in subject.photo_scenes()])
    from trainer.data import photo_views

    rng = np.random.default_rng(seed % 2**64)
    return memorization.references([scenes.to_array(image) for path in photo_files
                                    for image, _ in photo_views(path, scenes.RESOLUTION, count=views, rng=rng)])


def judge(context: Context, images: list, refs: np.ndarray) -> ContextFigures:
    """Read each image and count what the context asks."""
    arrays = [scenes.to_array(im) for im in images]
    readings = [classifier.read(a) for a in arrays]
    hits = [context.subject_right(r) for r in readings]
    centres = [(b.cx, b.cy) for r, hit in zip(readings, hits, strict=True) if hit for b in [r.subject()]]
    distances = [memorization.nearest_distance(a, refs) for a in arrays]
    return ContextFigures(context.heldout, len(images), sum(hits), sum(context.prompt_right(r) for r in readings),
                          sum(d < memorization.COPY_DISTANCE for d in distances),
                          memorization.position_spread(centres))


def sample(generator, prompt: str, adapters: list, *, n: int, steps: int, guidance: float, seed: int) -> list:
    """n images of `prompt`, seeds seed..seed+n-1, in batches the generator takes."""
    images = []
    for start in range(0, n, BATCH):
        images += generator.generate(prompt, adapters, n=min(BATCH, n - start), seed=seed + start, steps=steps,
                                     guidance=guidance, resolution=scenes.RESOLUTION).images
    return images


def measure(generator, adapter_dir, token: str, *, seeds: int = 32, steps: int = 25, guidance: float = 7.5,
            seed: int = 0, contexts: tuple[Context, ...] = CONTEXTS, refs: np.ndarray | None = None) -> Measured:
    """Generate each context's identifier prompt with the subject's adapter (trainer.generate.ImageGenerator),
    and twice as many class-prompt samples; read and count. `refs`: the training images copies are measured
    against (default: the photos' centre crops and mirror images)."""
    adapters = [("toy_subject", adapter_dir)]
    refs = photo_references() if refs is None else refs
    figures, images = {}, {}
    for context in contexts:
        images[context.name] = sample(generator, context.prompt(token), adapters, n=seeds, steps=steps,
                                      guidance=guidance, seed=seed)
        figures[context.name] = judge(context, images[context.name], refs)
    images["class"] = sample(generator, subject.class_prompt(), adapters, n=2 * seeds, steps=steps,
                             guidance=guidance, seed=seed)
    collapsed = sum(classifier.read(scenes.to_array(im)).subject_pattern for im in images["class"])
    return Measured(figures, collapsed, len(images["class"]), images)


def base_rates(generator, *, seeds: int = 32, steps: int = 25, guidance: float = 7.5, seed: int = 0,
               contexts: tuple[Context, ...] = CONTEXTS) -> dict[str, float]:
    """The base model's share of class-prompt samples showing a plain circle in each context."""
    rates = {}
    for context in contexts:
        images = sample(generator, context.class_prompt(), [], n=seeds, steps=steps, guidance=guidance, seed=seed)
        rates[context.name] = float(np.mean([context.circle_right(classifier.read(scenes.to_array(im)))
                                             for im in images]))
    return rates
