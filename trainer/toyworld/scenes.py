"""The toy world: flat shapes, of one colour or two, on a plain background, with their captions.

Every scene is a pure function of (seed, index), so the pretraining set, the subject's photos and
the evaluation prompts are the same on every machine. Shapes are drawn at 4x and box-filtered
down, so edges are anti-aliased the way a photo's would be.

Most objects are one colour ("a photo of a red circle on a blue background"); some are two-tone,
one colour over another ("a photo of a red and green square on a white background"), so the
model knows what two-tone objects look like, as Stable Diffusion knows stripes and spots. Captions
may also say an object's size ("a small red circle", "a big ..."), where it is ("... in the top
left"), or that a second object stands beside it ("a red circle next to a blue square"): the
contexts in which DreamBooth must show a subject its photos never showed there.

The subject is something the world never shows: one particular circle, yellow over black. No
world object pairs those two colours. Its class noun is "circle", so prior preservation has a
real prior to keep: "a photo of a circle" shows one-colour circles, never two-tone ones.
"""

from __future__ import annotations

import dataclasses
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
    # Added with the held-out contexts: backgrounds no subject photo uses. Every pair of palette
    # colours is at least 90 apart in RGB, so the classifier tells them apart after the VAE.
    "purple": (130, 50, 180),
    "cyan": (40, 200, 210),
    "pink": (240, 120, 200),
    "grey": (128, 128, 128),
}
COLOURS = tuple(PALETTE)
SHAPES = ("circle", "square", "triangle")

# The subject: a circle, its top half yellow and its bottom half black (a "bee ball").
SUBJECT_SHAPE = "circle"
SUBJECT_BANDS = ("yellow", "black")
SUBJECT_N_BANDS = 2
P_TWO_TONE = 0.3  # share of single-object world scenes whose object is two-tone
TWO_TONE_WORD = "two-tone"  # what a caption that leaves out the colours calls a two-tone object
# Backgrounds on which both bands stand out. The subject's photos use the first four; the other
# four are held out: evaluation asks for them, no photo shows them.
SUBJECT_BACKGROUNDS = tuple(c for c in COLOURS if c not in SUBJECT_BANDS)
PHOTO_BACKGROUNDS = ("red", "green", "blue", "white")
HELDOUT_BACKGROUNDS = tuple(c for c in SUBJECT_BACKGROUNDS if c not in PHOTO_BACKGROUNDS)

# Sizes a caption names (half the object's width, as a share of the side); a size between them is
# never named. Places a caption names: the quadrant the object's centre lies in.
SIZES: dict[str, tuple[float, float]] = {"small": (0.13, 0.18), "": (0.2, 0.28), "big": (0.3, 0.36)}
PLACES: dict[str, tuple[int, int]] = {"top left": (0, 0), "top right": (1, 0), "bottom left": (0, 1),
                                      "bottom right": (1, 1)}
PLACED_MAX_SIZE = 0.25  # larger objects do not fit in a quadrant
P_TWO_OBJECTS = 0.2  # share of world scenes with a second object beside the first
PAIR_SIZE = (0.12, 0.17)  # each object of a pair


@dataclass(frozen=True)
class Scene:
    shape: str  # one of SHAPES
    colour: str  # the object's colour (the first band's for a banded object)
    background: str  # the background's colour
    cx: float  # centre, as a fraction of the image side
    cy: float
    size: float  # half the object's width, as a fraction of the image side
    bands: tuple[str, ...] = ()  # banded colours top to bottom; () for a plain object
    size_word: str = ""  # "small" or "big" where the caption names the size
    place: str = ""  # one of PLACES where the caption names where the object is
    other: Scene | None = None  # a second object, beside this one (its own background field is ignored)

    @property
    def patterned(self) -> bool:
        return bool(self.bands)


def in_place(rng: np.random.Generator, size: float, place: str) -> tuple[float, float]:
    """A centre inside the quadrant `place` (the object whole in the image, its centre clear of the middle)."""
    qx, qy = PLACES[place]
    lo, hi = size + 0.03, 0.44
    x, y = rng.uniform(lo, hi, size=2)
    return float(1 - x if qx else x), float(1 - y if qy else y)


def random_scene(rng: np.random.Generator) -> Scene:
    """A world scene: shape, object colour, a different background colour, size and position.

    The size is small, middling or big (a third each); a small or middling object is put in a
    named quadrant half the time, anywhere otherwise.
    """
    shape = SHAPES[rng.integers(len(SHAPES))]
    colour = COLOURS[rng.integers(len(COLOURS))]
    background = rng.choice([c for c in COLOURS if c != colour])
    size_word = tuple(SIZES)[rng.integers(len(SIZES))]
    size = float(rng.uniform(*SIZES[size_word]))
    place = ""
    if size <= PLACED_MAX_SIZE and rng.random() < 0.5:
        place = tuple(PLACES)[rng.integers(len(PLACES))]
        cx, cy = in_place(rng, size, place)
    else:
        cx, cy = (float(v) for v in rng.uniform(size + 0.04, 1 - size - 0.04, size=2))
    return Scene(shape, colour, str(background), cx, cy, size, size_word=size_word, place=place)


def pair_scene(rng: np.random.Generator) -> Scene:
    """Two one-colour objects side by side, a gap between them, on one background."""
    background = str(rng.choice(COLOURS))
    objects = []
    for left in (True, False):
        shape = SHAPES[rng.integers(len(SHAPES))]
        colour = str(rng.choice([c for c in COLOURS if c != background]))
        size = float(rng.uniform(*PAIR_SIZE))
        cx = float(rng.uniform(0.18, 0.3)) if left else float(rng.uniform(0.7, 0.82))
        cy = float(rng.uniform(0.3, 0.7))
        objects.append(Scene(shape, colour, background, cx, cy, size))
    first, second = objects if rng.random() < 0.5 else objects[::-1]  # "next to" runs either way
    return dataclasses.replace(first, other=second)


def two_tone_scene(rng: np.random.Generator) -> Scene:
    """A world scene whose object is one colour over another, never the subject's pair."""
    scene = random_scene(rng)
    others = [c for c in COLOURS if c != scene.background]
    while True:
        top, bottom = (str(c) for c in rng.choice(others, size=2, replace=False))
        if {top, bottom} != set(SUBJECT_BANDS):
            return dataclasses.replace(scene, colour=top, bands=(top, bottom))


def mirrored(scene: Scene) -> Scene:
    """The scene flipped left to right: its place's left and right swap (training flips latents)."""
    swap = {"left": "right", "right": "left"}
    place = " ".join(swap.get(w, w) for w in scene.place.split())
    other = mirrored(scene.other) if scene.other is not None else None
    return dataclasses.replace(scene, cx=1 - scene.cx, place=place, other=other)


def world_scene(seed: int, index: int) -> Scene:
    """Scene number `index` of the world drawn with `seed`: the same on every machine."""
    rng = np.random.default_rng([seed, index])
    u = rng.random()
    if u < P_TWO_OBJECTS:
        return pair_scene(rng)
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


def caption(scene: Scene, *, colour: bool = True, background: bool = True, size: bool = True,
            place: bool = True, word: str = "", word_replaces_article: bool = True) -> str:
    """'a photo of a small red circle in the top left on a blue background', leaving parts out.

    A two-tone object is 'a red and green circle', or without its colours 'a two-tone circle', so
    that 'a photo of a circle' always means a one-colour circle. A second object is always named in
    full ('... next to a blue square'). `word` puts one more word before the object: in place of its
    article ('a photo of sks circle', as DreamBooth's prompts) or after its size word ('a photo of a
    small sks circle').
    """
    if len(scene.bands) == 2:
        noun = f"{scene.bands[0]} and {scene.bands[1]} {scene.shape}" if colour else f"{TWO_TONE_WORD} {scene.shape}"
    else:
        noun = f"{scene.colour} {scene.shape}" if colour else scene.shape
    before = [scene.size_word] if size and scene.size_word else []
    if word and word_replaces_article:
        words = [word, *before, noun]
    else:
        words = ["a", *before, *([word] if word else []), noun]
    if place and scene.place:
        words.append(f"in the {scene.place}")
    if scene.other is not None:
        words.append(f"next to a {scene.other.colour} {scene.other.shape}")
    if background:
        words.append(f"on a {scene.background} background")
    return "a photo of " + " ".join(words)


# Every word `caption` can write.
CAPTION_WORDS = frozenset({*COLOURS, *SHAPES, TWO_TONE_WORD, *(w for k in (*SIZES, *PLACES) for w in k.split()),
                           "a", "photo", "of", "and", "on", "background", "in", "the", "next", "to"})


def _outline(scene: Scene, side: int) -> list[tuple[float, float]] | tuple[float, float, float, float]:
    x, y, r = scene.cx * side, scene.cy * side, scene.size * side
    if scene.shape == "triangle":  # upright, as wide as it is tall
        return [(x - r, y + r), (x + r, y + r), (x, y - r)]
    return (x - r, y - r, x + r, y + r)


def render(scene: Scene, resolution: int = RESOLUTION) -> Image.Image:
    """The scene as an RGB image, anti-aliased."""
    side = resolution * SUPERSAMPLE
    image = Image.new("RGB", (side, side), PALETTE[scene.background])
    _draw(image, scene, side)
    if scene.other is not None:
        _draw(image, scene.other, side)
    return image.resize((resolution, resolution), Image.Resampling.BOX)


def _draw(image: Image.Image, scene: Scene, side: int) -> None:
    """Paint the scene's object (not its background) onto `image`, `side` pixels square."""
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


def to_array(image: Image.Image) -> np.ndarray:
    """[H, W, 3] uint8."""
    return np.asarray(image.convert("RGB"), dtype=np.uint8)
