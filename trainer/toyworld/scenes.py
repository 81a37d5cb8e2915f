"""The toy world: one flat shape, of one colour or two, on a plain background, with its caption.

Every scene is a pure function of (seed, index), so the pretraining set, the subject's photos and
the evaluation prompts are the same on every machine. Shapes are drawn at 4x and box-filtered
down, so edges are anti-aliased the way a photo's would be.

Most objects are one colour ("a photo of a red circle on a blue background"); some are two-tone,
one colour over another ("a photo of a red and green square on a white background"), so the
model knows what two-tone objects look like, as Stable Diffusion knows stripes and spots.

The subject is something the world never shows: one particular circle, yellow over black. No
world object pairs those two colours. Its class noun is "circle", so prior preservation has a
real prior to keep: "a photo of a circle" shows one-colour circles, never two-tone ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

RESOLUTION = 64  # the tiny pipeline's native size (8x8 latents)
SUPERSAMPLE = 4

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 210, 40),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
COLOURS = tuple(PALETTE)
SHAPES = ("circle", "square", "triangle")

# The subject: a circle, its top half yellow and its bottom half black (a "bee ball").
SUBJECT_SHAPE = "circle"
SUBJECT_BANDS = ("yellow", "black")
SUBJECT_N_BANDS = 2
P_TWO_TONE = 0.3  # share of world scenes whose object is two-tone
TWO_TONE_WORD = "two-tone"  # what a caption that leaves out the colours calls a two-tone object
# Backgrounds on which both bands stand out; evaluation prompts use only these.
SUBJECT_BACKGROUNDS = tuple(c for c in COLOURS if c not in SUBJECT_BANDS)


@dataclass(frozen=True)
class Scene:
    shape: str  # one of SHAPES
    colour: str  # the object's colour (the first band's for a banded object)
    background: str  # the background's colour
    cx: float  # centre, as a fraction of the image side
    cy: float
    size: float  # half the object's width, as a fraction of the image side
    bands: tuple[str, ...] = ()  # banded colours top to bottom; () for a plain object

    @property
    def patterned(self) -> bool:
        return bool(self.bands)


def random_scene(rng: np.random.Generator) -> Scene:
    """A world scene: shape, object colour, a different background colour, position and size."""
    shape = SHAPES[rng.integers(len(SHAPES))]
    colour = COLOURS[rng.integers(len(COLOURS))]
    background = rng.choice([c for c in COLOURS if c != colour])
    size = rng.uniform(0.2, 0.32)
    cx, cy = rng.uniform(size + 0.04, 1 - size - 0.04, size=2)
    return Scene(shape, colour, str(background), float(cx), float(cy), float(size))


def two_tone_scene(rng: np.random.Generator) -> Scene:
    """A world scene whose object is one colour over another, never the subject's pair."""
    scene = random_scene(rng)
    others = [c for c in COLOURS if c != scene.background]
    while True:
        top, bottom = (str(c) for c in rng.choice(others, size=2, replace=False))
        if {top, bottom} != set(SUBJECT_BANDS):
            return Scene(scene.shape, top, scene.background, scene.cx, scene.cy, scene.size, (top, bottom))


def world_scene(seed: int, index: int) -> Scene:
    """Scene number `index` of the world drawn with `seed`: the same on every machine."""
    rng = np.random.default_rng([seed, index])
    return two_tone_scene(rng) if rng.random() < P_TWO_TONE else random_scene(rng)


def plain_scene(seed: int, index: int) -> Scene:
    """Scene number `index` of a world of one-colour objects only (what prompt accuracy is measured on)."""
    return random_scene(np.random.default_rng([seed, index, 3]))


def subject_scene(seed: int, index: int, background: str | None = None) -> Scene:
    """A photo of the subject: the banded circle, somewhere, at some size, on a subject-friendly background."""
    rng = np.random.default_rng([seed, index, 7])
    bg = background or str(rng.choice(SUBJECT_BACKGROUNDS))
    size = rng.uniform(0.26, 0.32)
    cx, cy = rng.uniform(size + 0.04, 1 - size - 0.04, size=2)
    bands = tuple(SUBJECT_BANDS[i % 2] for i in range(SUBJECT_N_BANDS))
    return Scene(SUBJECT_SHAPE, SUBJECT_BANDS[0], bg, float(cx), float(cy), float(size), bands)


def codec_scene(rng: np.random.Generator) -> Scene:
    """A scene for the VAE alone: a random shape painted in 2 to 7 bands of random colours.

    The VAE is an image codec and must reproduce patterns the world's captions never show (the
    subject's bands among them), as Stable Diffusion's VAE reproduces anything; the UNet and the
    text encoder never see these scenes.
    """
    scene = random_scene(rng)
    n = int(rng.integers(2, 8))
    others = [c for c in COLOURS if c != scene.background]
    bands = [str(rng.choice(others))]
    while len(bands) < n:
        bands.append(str(rng.choice([c for c in others if c != bands[-1]])))
    return Scene(scene.shape, bands[0], scene.background, scene.cx, scene.cy, scene.size, tuple(bands))


def caption(scene: Scene, *, colour: bool = True, background: bool = True) -> str:
    """'a photo of a red circle on a blue background', leaving out the colour and/or the background.

    A two-tone object is 'a red and green circle', or without its colours 'a two-tone circle', so
    that 'a photo of a circle' always means a one-colour circle.
    """
    if len(scene.bands) == 2:
        noun = f"{scene.bands[0]} and {scene.bands[1]} {scene.shape}" if colour else f"{TWO_TONE_WORD} {scene.shape}"
    else:
        noun = f"{scene.colour} {scene.shape}" if colour else scene.shape
    text = f"a photo of a {noun}"
    return f"{text} on a {scene.background} background" if background else text


def _outline(scene: Scene, side: int) -> list[tuple[float, float]] | tuple[float, float, float, float]:
    x, y, r = scene.cx * side, scene.cy * side, scene.size * side
    if scene.shape == "triangle":  # upright, as wide as it is tall
        return [(x - r, y + r), (x + r, y + r), (x, y - r)]
    return (x - r, y - r, x + r, y + r)


def render(scene: Scene, resolution: int = RESOLUTION) -> Image.Image:
    """The scene as an RGB image, anti-aliased."""
    side = resolution * SUPERSAMPLE
    image = Image.new("RGB", (side, side), PALETTE[scene.background])
    mask = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(mask)
    outline = _outline(scene, side)
    if scene.shape == "circle":
        draw.ellipse(outline, fill=255)
    elif scene.shape == "square":
        draw.rectangle(outline, fill=255)
    elif scene.shape == "triangle":
        draw.polygon(outline, fill=255)
    else:
        raise ValueError(f"unknown shape {scene.shape!r}")
    paint = Image.new("RGB", (side, side), PALETTE[scene.colour])
    if scene.bands:
        top, bottom = (scene.cy - scene.size) * side, (scene.cy + scene.size) * side
        step = (bottom - top) / len(scene.bands)
        pd = ImageDraw.Draw(paint)
        for i, band in enumerate(scene.bands):
            pd.rectangle((0, top + i * step, side, top + (i + 1) * step), fill=PALETTE[band])
    image.paste(paint, (0, 0), mask)
    return image.resize((resolution, resolution), Image.Resampling.BOX)


def to_array(image: Image.Image) -> np.ndarray:
    """[H, W, 3] uint8."""
    return np.asarray(image.convert("RGB"), dtype=np.uint8)
