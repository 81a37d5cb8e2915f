"""The toy world's scenes: deterministic, varied, captioned, and free of the subject."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.toyworld import scenes, subject


def test_scenes_are_a_pure_function_of_seed_and_index():
    assert scenes.world_scene(3, 17) == scenes.world_scene(3, 17)
    assert np.array_equal(scenes.to_array(scenes.render(scenes.world_scene(3, 17))),
                          scenes.to_array(scenes.render(scenes.world_scene(3, 17))))


def test_object_and_background_colours_always_differ():
    world = [scenes.world_scene(0, i) for i in range(500)]
    assert all(s.colour != s.background and s.background not in s.bands for s in world)
    assert all(s.other.colour != s.background for s in world if s.other is not None)


def test_world_covers_every_shape_and_colour():
    world = [scenes.world_scene(0, i) for i in range(500)]
    assert {s.shape for s in world} == set(scenes.SHAPES)
    assert {s.colour for s in world} == {s.background for s in world} == set(scenes.COLOURS)


def test_world_has_two_tone_objects_but_never_the_subject_pair():
    """About P_TWO_TONE of single objects are two-tone, none yellow with black: the subject is new to the model."""
    world = [s for s in (scenes.world_scene(0, i) for i in range(2000)) if s.other is None]
    two_tone = [s for s in world if s.patterned]
    assert abs(len(two_tone) / len(world) - scenes.P_TWO_TONE) < 0.04
    assert all(len(s.bands) == 2 and s.bands[0] != s.bands[1] for s in two_tone)
    assert not any(set(s.bands) == set(scenes.SUBJECT_BANDS) for s in two_tone)


def test_plain_scenes_are_one_colour():
    assert not any(scenes.plain_scene(0, i).patterned for i in range(500))


@pytest.mark.parametrize(("colour", "background", "want"), [
    (True, True, "a photo of a red circle on a blue background"),
    (False, True, "a photo of a circle on a blue background"),
    (True, False, "a photo of a red circle"),
    (False, False, "a photo of a circle"),
])
def test_caption_leaves_out_what_it_is_told(colour, background, want):
    scene = scenes.Scene("circle", "red", "blue", 0.5, 0.5, 0.25)
    assert scenes.caption(scene, colour=colour, background=background) == want


@pytest.mark.parametrize(("colour", "want"), [
    (True, "a photo of a red and green square on a blue background"),
    (False, "a photo of a two-tone square on a blue background"),
])
def test_two_tone_captions_never_reduce_to_the_class_prompt(colour, want):
    """Without its colours a two-tone object is still 'two-tone': 'a photo of a square' stays one-colour."""
    scene = scenes.Scene("square", "red", "blue", 0.5, 0.5, 0.25, ("red", "green"))
    assert scenes.caption(scene, colour=colour) == want


def test_objects_stay_inside_the_image():
    for i in range(200):
        s = scenes.world_scene(0, i)
        assert s.size < s.cx < 1 - s.size and s.size < s.cy < 1 - s.size


def test_class_prompt_is_the_one_training_preserves():
    """The toy subject's class prompt is exactly TrainConfig.class_prompt for class 'circle'."""
    from trainer.config import TrainConfig

    assert subject.class_prompt() == TrainConfig(class_noun=subject.CLASS_NOUN).class_prompt


def test_subject_photos_pass_photo_intake(tmp_path):
    """Four 256 px PNGs, accepted by the bot's photo checks, on four different backgrounds."""
    from storage import photos
    from storage.config import PhotoLimits

    paths = subject.write_photos(tmp_path)
    assert len(paths) == 4 and len({s.background for s in subject.photo_scenes()}) == 4
    for p in paths:
        photos.inspect_photo(p.read_bytes(), filename=p.name, content_type=None, limits=PhotoLimits())


def test_codec_scenes_are_banded_with_different_neighbouring_colours():
    """The VAE's extra scenes: 2 to 7 bands, no two neighbours alike, none the background's colour."""
    rng = np.random.default_rng(0)
    for s in (scenes.codec_scene(rng) for _ in range(200)):
        assert 2 <= len(s.bands) <= 7 and s.background not in s.bands
        assert all(a != b for a, b in zip(s.bands, s.bands[1:], strict=False))


def test_world_names_sizes_places_and_pairs():
    """Captions say 'small' and 'big', every place, and 'next to': the held-out contexts' words are known."""
    world = [scenes.world_scene(0, i) for i in range(2000)]
    assert {s.size_word for s in world} == set(scenes.SIZES)
    assert {s.place for s in world} == {"", *scenes.PLACES}
    pairs = [s for s in world if s.other is not None]
    assert abs(len(pairs) / len(world) - scenes.P_TWO_OBJECTS) < 0.04


def test_named_sizes_and_places_are_what_they_say():
    for s in (scenes.world_scene(1, i) for i in range(1000)):
        lo, hi = scenes.SIZES[s.size_word] if s.other is None else scenes.PAIR_SIZE
        assert lo <= s.size <= hi
        if s.place:
            qx, qy = scenes.PLACES[s.place]
            assert (s.cx > 0.5) == bool(qx) and (s.cy > 0.5) == bool(qy)
            assert abs(s.cx - 0.5) > 0.05 and abs(s.cy - 0.5) > 0.05


def test_pairs_never_touch_and_differ_from_their_background():
    for s in (scenes.world_scene(2, i) for i in range(1000)):
        if s.other is not None:
            assert abs(s.cx - s.other.cx) - s.size - s.other.size > 0.05
            assert s.background not in (s.colour, s.other.colour)


def test_pair_captions_name_both_objects():
    scene = scenes.Scene("circle", "red", "white", 0.25, 0.5, 0.15,
                         other=scenes.Scene("square", "blue", "white", 0.75, 0.5, 0.15))
    assert scenes.caption(scene) == "a photo of a red circle next to a blue square on a white background"
    assert scenes.caption(scene, colour=False, word="sks") == \
        "a photo of sks circle next to a blue square on a white background"


def test_mirroring_swaps_left_and_right():
    """Training flips latents left to right, so a flipped scene's caption must say the other side."""
    scene = scenes.Scene("circle", "red", "blue", 0.3, 0.7, 0.15, size_word="small", place="bottom left")
    flipped = scenes.mirrored(scene)
    assert flipped.place == "bottom right" and flipped.cx == pytest.approx(0.7)
    assert np.array_equal(scenes.to_array(scenes.render(flipped)), scenes.to_array(scenes.render(scene))[:, ::-1])


def test_photo_backgrounds_leave_four_held_out():
    assert {s.background for s in subject.photo_scenes()} == set(scenes.PHOTO_BACKGROUNDS)
    assert len(scenes.HELDOUT_BACKGROUNDS) == 4
    assert not set(scenes.HELDOUT_BACKGROUNDS) & set(scenes.PHOTO_BACKGROUNDS)
    assert not set(scenes.SUBJECT_BACKGROUNDS) & set(scenes.SUBJECT_BANDS)
