"""The strict subject test refuses everything that is not the yellow-over-black circle alone."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image, ImageDraw

from trainer.toyworld import classifier, scenes

SIDE = 64
UP = scenes.SUPERSAMPLE * SIDE
YELLOW, BLACK = scenes.PALETTE["yellow"], scenes.PALETTE["black"]


def banded(mask: Image.Image, background: str = "blue", bands=(YELLOW, BLACK)) -> np.ndarray:
    """The mask's shape painted in horizontal bands across its own box, on a plain background, at 64 px."""
    image = Image.new("RGB", (UP, UP), scenes.PALETTE[background])
    top, bottom = mask.getbbox()[1], mask.getbbox()[3]
    paint = Image.new("RGB", (UP, UP), bands[0])
    draw = ImageDraw.Draw(paint)
    step = (bottom - top) / len(bands)
    for i, colour in enumerate(bands):
        draw.rectangle((0, top + i * step, UP, top + (i + 1) * step), fill=colour)
    image.paste(paint, (0, 0), mask)
    return scenes.to_array(image.resize((SIDE, SIDE), Image.Resampling.BOX))


def mask_of(draw_fn) -> Image.Image:
    mask = Image.new("L", (UP, UP), 0)
    draw_fn(ImageDraw.Draw(mask))
    return mask


def box(cx, cy, r):
    return (cx * UP - r * UP, cy * UP - r * UP, cx * UP + r * UP, cy * UP + r * UP)


def subject_image(**change) -> np.ndarray:
    return scenes.to_array(scenes.render(dataclasses.replace(scenes.subject_scene(11, 0, "blue"), **change)))


def blob(rng: np.random.Generator) -> Image.Image:
    """An irregular lump: a disc with three smaller ones bulging from its edge."""
    def draw(d):
        d.ellipse(box(0.5, 0.5, 0.2), fill=255)
        for angle in rng.uniform(0, 2 * np.pi, size=3):
            d.ellipse(box(0.5 + 0.2 * np.cos(angle), 0.5 + 0.2 * np.sin(angle), rng.uniform(0.08, 0.12)), fill=255)
    return mask_of(draw)


def test_the_real_subject_passes():
    """The control: the subject's own rendering, at any size and place, is the subject."""
    for i in range(30):
        assert classifier.read(scenes.to_array(scenes.render(scenes.subject_scene(12, i)))).subject_pattern


@pytest.mark.parametrize("seed", range(20))
def test_blobs_with_the_pattern_are_refused(seed):
    assert not classifier.read(banded(blob(np.random.default_rng(seed)))).subject_pattern


@pytest.mark.parametrize("shape", ["square", "triangle"])
@pytest.mark.parametrize("seed", range(10))
def test_squares_and_triangles_with_the_pattern_are_refused(shape, seed):
    scene = dataclasses.replace(scenes.subject_scene(seed, 1, "white"), shape=shape)
    assert not classifier.read(scenes.to_array(scenes.render(scene))).subject_pattern


@pytest.mark.parametrize(("start", "end"), [(0, 180), (180, 360), (0, 270), (45, 315), (200, 160), (-60, 240)])
def test_partial_circles_are_refused(start, end):
    """Half discs, three-quarter discs, chords cut off: a broken circle is not the subject."""
    assert not classifier.read(banded(mask_of(lambda d: d.pieslice(box(0.5, 0.5, 0.3), start, end, fill=255)))
                               ).subject_pattern


def test_a_circle_with_a_chord_cut_off_is_refused():
    def draw(d):
        d.ellipse(box(0.5, 0.5, 0.3), fill=255)
        d.rectangle((0, 0.72 * UP, UP, UP), fill=0)
    assert not classifier.read(banded(mask_of(draw))).subject_pattern


def test_a_squashed_circle_is_refused():
    assert not classifier.read(banded(mask_of(lambda d: d.ellipse((0.2 * UP, 0.32 * UP, 0.8 * UP, 0.68 * UP),
                                                                   fill=255)))).subject_pattern


@pytest.mark.parametrize("second", ["subject", "red circle", "yellow blob"])
def test_two_objects_are_refused(second):
    """The subject beside anything else is not 'the subject' (only `subject_beside` asks for a second object)."""
    left = dataclasses.replace(scenes.subject_scene(11, 0, "blue"), cx=0.27, cy=0.5, size=0.16)
    if second == "subject":
        other = dataclasses.replace(left, cx=0.73)
    elif second == "red circle":
        other = scenes.Scene("circle", "red", "blue", 0.73, 0.5, 0.14)
    else:
        other = scenes.Scene("square", "yellow", "blue", 0.75, 0.5, 0.06)
    reading = classifier.read(scenes.to_array(scenes.render(dataclasses.replace(left, other=other))))
    assert not reading.subject_pattern


def test_the_subject_beside_the_named_object_is_read_as_such():
    left = dataclasses.replace(scenes.subject_scene(11, 0, "white"), cx=0.27, cy=0.5, size=0.16)
    image = scenes.to_array(scenes.render(dataclasses.replace(
        left, other=scenes.Scene("square", "red", "white", 0.74, 0.45, 0.14))))
    reading = classifier.read(image)
    assert reading.subject_beside("square", "red")
    assert not reading.subject_beside("square", "blue") and not reading.subject_beside("triangle", "red")


@pytest.mark.parametrize("seed", range(10))
def test_noise_is_refused(seed):
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, size=(SIDE, SIDE, 3), dtype=np.uint8)
    assert not classifier.read(noise).subject_pattern


@pytest.mark.parametrize("seed", range(10))
def test_palette_confetti_is_refused(seed):
    """Pixels of palette colours scattered at random, yellow and black among them."""
    rng = np.random.default_rng(seed)
    colours = np.array(list(scenes.PALETTE.values()), dtype=np.uint8)
    assert not classifier.read(colours[rng.integers(len(colours), size=(SIDE, SIDE))]).subject_pattern


def test_the_subject_in_noise_is_refused():
    """Stray specks around the subject are clutter: a noisy picture of it does not count."""
    image = subject_image().copy()
    rng = np.random.default_rng(0)
    ys, xs = rng.integers(0, SIDE, size=(2, 120))
    image[ys, xs] = scenes.PALETTE["red"]
    assert not classifier.read(image).subject_pattern


def test_scattered_yellow_and_black_blobs_are_refused():
    """Separate yellow and black blobs, the yellow ones above, are several objects, not one banded circle."""
    image = Image.new("RGB", (UP, UP), scenes.PALETTE["red"])
    draw = ImageDraw.Draw(image)
    for cx, cy, colour in [(0.3, 0.3, YELLOW), (0.6, 0.28, YELLOW), (0.35, 0.7, BLACK), (0.65, 0.72, BLACK)]:
        draw.ellipse(box(cx, cy, 0.1), fill=colour)
    assert not classifier.read(scenes.to_array(image.resize((SIDE, SIDE), Image.Resampling.BOX))).subject_pattern


@pytest.mark.parametrize("bands", [(YELLOW, scenes.PALETTE["red"], BLACK), (YELLOW, scenes.PALETTE["green"]),
                                   (BLACK, YELLOW), (YELLOW, BLACK, YELLOW, BLACK)])
def test_other_patterns_on_a_circle_are_refused(bands):
    """A third colour, a wrong colour, the bands upside down or repeated: not yellow over black."""
    assert not classifier.read(banded(mask_of(lambda d: d.ellipse(box(0.5, 0.5, 0.3), fill=255)), bands=bands)
                               ).subject_pattern


def test_a_diagonal_split_is_refused():
    """Yellow in the top left, black in the bottom right: beside as much as above."""
    mask = mask_of(lambda d: d.ellipse(box(0.5, 0.5, 0.3), fill=255))
    paint = Image.new("RGB", (UP, UP), BLACK)
    ImageDraw.Draw(paint).polygon([(0, 0), (UP, 0), (0, UP)], fill=YELLOW)
    image = Image.new("RGB", (UP, UP), scenes.PALETTE["white"])
    image.paste(paint, (0, 0), mask)
    assert not classifier.read(scenes.to_array(image.resize((SIDE, SIDE), Image.Resampling.BOX))).subject_pattern
