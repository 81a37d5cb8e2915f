"""The code-only classifier reads rendered scenes correctly."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from trainer.toyworld import classifier, scenes, subject

N = 300


@pytest.fixture(scope="module")
def readings():
    world = [scenes.plain_scene(1, i) for i in range(N)]
    return world, [classifier.read(scenes.to_array(scenes.render(s))) for s in world]


@pytest.mark.parametrize("part", ["shape", "colour", "background"])
def test_reads_every_rendered_scene_right(readings, part):
    world, read = readings
    assert [getattr(r, part) for r in read] == [getattr(s, part) for s in world]


def test_plain_objects_never_show_the_subject_pattern(readings):
    assert not any(r.subject_pattern for r in readings[1])


def test_other_two_tone_objects_read_right_and_are_not_the_subject():
    """A two-tone world object keeps its shape and background, and only yellow-over-black is the subject."""
    two_tone = [s for s in (scenes.world_scene(2, i) for i in range(400)) if s.patterned][:60]
    for s in two_tone:
        r = classifier.read(scenes.to_array(scenes.render(s)))
        assert (r.shape, r.background) == (s.shape, s.background) and not r.subject_pattern
        assert r.colour in s.bands


def test_subject_photos_show_the_pattern():
    for s in (scenes.subject_scene(5, i) for i in range(40)):
        r = classifier.read(scenes.to_array(scenes.render(s)))
        assert r.subject_pattern and r.shape == "circle" and r.background == s.background


def test_blank_image_has_no_object():
    image = np.full((64, 64, 3), scenes.PALETTE["green"], dtype=np.uint8)
    r = classifier.read(image)
    assert r.shape is None and r.background == "green" and not r.subject_pattern


@pytest.mark.parametrize(("fill", "taper", "roundness", "aspect", "want"), [
    (0.97, 1.0, 0.8, 1.0, "square"), (0.79, 1.0, 0.95, 1.0, "circle"), (0.5, 6.0, 0.5, 1.0, "triangle"),
    (0.79, 1.0, 0.8, 1.0, "blob"), (0.79, 1.0, 0.95, 1.5, "blob")])
def test_shape_rules(fill, taper, roundness, aspect, want):
    assert classifier.classify_shape(fill, taper, roundness, aspect) == want


def test_pairs_read_as_two_objects_of_the_right_shapes_and_colours():
    """'a red circle next to a blue square': both objects, each read right, none of them the subject."""
    pairs = [s for s in (scenes.world_scene(4, i) for i in range(600)) if s.other is not None][:60]
    for s in pairs:
        r = classifier.read(scenes.to_array(scenes.render(s)))
        assert sorted((o.shape, o.colour) for o in r.objects) == sorted(
            (o.shape, o.colour) for o in (s, s.other))
        assert not r.subject_pattern and not r.subject_beside(s.other.shape, s.other.colour)


def test_place_and_size_are_read_back():
    """Each object's centre and half-width come back within 2 px of the scene's, at every size."""
    for s in (scenes.world_scene(6, i) for i in range(200)):
        o = classifier.read(scenes.to_array(scenes.render(s))).main
        if s.other is None:
            assert abs(o.cx - s.cx) < 2 / 64 and abs(o.cy - s.cy) < 2 / 64 and abs(o.radius - s.size) < 2 / 64


def test_nearest_colour_maps_a_noisy_pixel_to_its_palette_colour():
    red = np.array(scenes.PALETTE["red"]) + np.array([20, -15, 10])
    assert list(scenes.PALETTE)[int(classifier.nearest_colour(red))] == "red"


def test_subject_photo_files_read_back_as_the_subject(tmp_path):
    """The 256 px photo files, resized to 64 px as training does, still read as the yellow-over-black circle."""
    from trainer.data import load_image

    for path in subject.write_photos(tmp_path):
        assert classifier.read(scenes.to_array(load_image(path, 64))).subject_pattern


def test_black_over_yellow_or_scattered_blobs_are_not_the_subject():
    """The subject is yellow over black: the same colours the other way up, or side by side, do not count."""
    upside_down = dataclasses.replace(scenes.subject_scene(5, 0, "blue"), bands=("black", "yellow"), colour="black")
    assert not classifier.read(scenes.to_array(scenes.render(upside_down))).subject_pattern
    side_by_side = np.rot90(scenes.to_array(scenes.render(scenes.subject_scene(5, 1, "red"))))
    reading = classifier.read(np.ascontiguousarray(side_by_side))
    assert reading.shares["yellow"] > 0.3 and reading.shares["black"] > 0.3 and not reading.subject_pattern
