"""The toy-world quality figures: contexts judged on rendered scenes, Wilson intervals, copies."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from trainer.toyworld import classifier, contexts, memorization, quality, scenes, subject

BY_NAME = {c.name: c for c in contexts.CONTEXTS}


def read(scene: scenes.Scene) -> classifier.Reading:
    return classifier.read(scenes.to_array(scenes.render(scene)))


def subject_on(background: str, **change) -> scenes.Scene:
    return dataclasses.replace(scenes.subject_scene(21, 0, background), **change)


def test_wilson_matches_the_textbook_values():
    """28 of 32: the 95% Wilson interval is 0.719-0.950 (the issue's figure); 0 of 10 starts at 0."""
    low, high = quality.wilson(28, 32)
    assert (round(low, 3), round(high, 3)) == (0.719, 0.950)
    assert quality.wilson(0, 10)[0] == 0.0 and quality.wilson(10, 10)[1] == 1.0


def test_contexts_hold_out_what_the_photos_never_show():
    """Eight held-out contexts: four backgrounds no photo has, size and place, and a neighbour."""
    photo_backgrounds = {s.background for s in subject.photo_scenes()}
    held = [c for c in contexts.CONTEXTS if c.heldout]
    assert len(held) == 8 and len(contexts.CONTEXTS) == 12
    assert all(c.background in photo_backgrounds for c in contexts.CONTEXTS if not c.heldout)
    assert {c.background for c in held if not (c.place or c.beside)} & photo_backgrounds == set()
    assert any(c.place and c.size_word for c in held) and any(c.beside for c in held)


def test_prompts_name_the_identifier_where_dreambooth_does():
    assert BY_NAME["purple"].prompt("sks") == "a photo of sks circle on a purple background"
    assert BY_NAME["small, top left"].prompt("sks") == "a photo of a small sks circle in the top left on a blue background"
    assert BY_NAME["beside a red square"].prompt("sks") == \
        "a photo of sks circle next to a red square on a white background"
    assert BY_NAME["beside a red square"].class_prompt() == "a photo of a circle next to a red square on a white background"


def test_the_subject_on_a_held_out_background_is_right_and_on_another_is_half_right():
    purple = BY_NAME["purple"]
    assert purple.subject_right(read(subject_on("purple"))) and purple.prompt_right(read(subject_on("purple")))
    assert purple.subject_right(read(subject_on("cyan"))) and not purple.prompt_right(read(subject_on("cyan")))


def test_place_and_size_must_both_be_right():
    """Small in the top left passes; the photo-sized subject in the middle, or small elsewhere, does not."""
    ctx = BY_NAME["small, top left"]
    assert ctx.prompt_right(read(subject_on("blue", cx=0.3, cy=0.28, size=0.15)))
    assert not ctx.prompt_right(read(subject_on("blue", cx=0.5, cy=0.5, size=0.29)))
    assert not ctx.prompt_right(read(subject_on("blue", cx=0.7, cy=0.3, size=0.15)))
    assert not ctx.prompt_right(read(subject_on("blue", cx=0.32, cy=0.32, size=0.27)))


def test_the_neighbour_context_wants_the_subject_and_the_named_object():
    ctx = BY_NAME["beside a red square"]
    beside = subject_on("white", cx=0.27, cy=0.5, size=0.15,
                        other=scenes.Scene("square", "red", "white", 0.74, 0.5, 0.14))
    assert ctx.subject_right(read(beside)) and ctx.prompt_right(read(beside))
    alone = subject_on("white")
    assert not ctx.subject_right(read(alone)) and not ctx.prompt_right(read(alone))
    wrong = dataclasses.replace(beside, other=scenes.Scene("triangle", "red", "white", 0.74, 0.5, 0.14))
    assert not ctx.subject_right(read(wrong)) and not ctx.prompt_right(read(wrong))


def test_the_base_models_rate_asks_for_a_plain_circle_in_the_context():
    ctx = BY_NAME["small, top left"]
    plain = scenes.Scene("circle", "red", "blue", 0.3, 0.3, 0.15)
    assert ctx.circle_right(read(plain))
    assert not ctx.circle_right(read(dataclasses.replace(plain, shape="square")))
    assert not ctx.circle_right(read(dataclasses.replace(plain, cx=0.7)))


def test_a_training_photo_is_a_copy_and_a_shifted_or_recoloured_one_is_not():
    refs = quality.photo_references()
    photo = scenes.to_array(scenes.render(subject.photo_scenes()[1]))
    assert memorization.nearest_distance(photo, refs) == 0.0
    assert memorization.nearest_distance(photo[:, ::-1], refs) == 0.0  # mirror images are training images too
    shifted = np.roll(np.roll(photo, 4, axis=0), 4, axis=1)
    assert memorization.nearest_distance(shifted, refs) > memorization.COPY_DISTANCE
    elsewhere = scenes.to_array(scenes.render(dataclasses.replace(subject.photo_scenes()[1], background="purple")))
    assert memorization.nearest_distance(elsewhere, refs) > 2 * memorization.COPY_DISTANCE
    assert memorization.copies([0.0, 0.05, 0.2, 0.4]) == 0.5


def test_position_spread_is_the_rms_distance_from_the_mean_in_pixels():
    assert memorization.position_spread([(0.5, 0.5)] * 5) == 0.0
    assert memorization.position_spread([(0.25, 0.5), (0.75, 0.5)]) == pytest.approx(16.0)


def test_judge_counts_hits_prompts_and_copies():
    """Four images for the 'red' context: the photo itself (a copy), the subject elsewhere on red, the subject
    on blue, and a plain circle."""
    red_photo = next(s for s in subject.photo_scenes() if s.background == "red")
    images = [scenes.render(red_photo), scenes.render(dataclasses.replace(red_photo, cx=0.4, cy=0.62, size=0.2)),
              scenes.render(dataclasses.replace(red_photo, background="blue")),
              scenes.render(scenes.Scene("circle", "green", "red", 0.5, 0.5, 0.25))]
    figures = quality.judge(BY_NAME["red"], images, quality.photo_references())
    assert (figures.n, figures.subject, figures.prompt, figures.copies) == (4, 3, 3, 1)


def test_pooled_figures_add_counts_not_shares():
    figs = {"a": quality.ContextFigures(True, 32, 32, 30, 0, 1.0), "b": quality.ContextFigures(True, 64, 32, 64, 0, 1.0),
            "c": quality.ContextFigures(False, 32, 0, 0, 32, 0.0)}
    measured = quality.Measured(figs, class_subject=1, n_class=64)
    pooled = measured.pooled(True)
    assert pooled["subject_fidelity"] == pytest.approx(64 / 96) and pooled["n"] == 96
    assert measured.copies == pytest.approx(32 / 128) and measured.class_collapse == pytest.approx(1 / 64)


def test_grids_of_a_blank_image_read_as_no_subject():
    blank = Image.new("RGB", (64, 64), scenes.PALETTE["grey"])
    assert not BY_NAME["grey"].subject_right(classifier.read(scenes.to_array(blank)))


def test_a_replayed_zoomed_view_is_a_copy_too(tmp_path):
    """With the trainer's cached views as references, a sample equal to a random view is at distance 0."""
    from trainer.data import photo_views

    files = subject.write_photos(tmp_path)
    refs = quality.photo_references(files, views=4, seed=3)
    rng = np.random.default_rng(3)  # one generator for all photos, as trainer.data.prepare draws them
    views = [image for path in files for image, _ in photo_views(path, 64, count=4, rng=rng)]
    assert len(refs) == 2 * 16
    assert memorization.nearest_distance(scenes.to_array(views[6]), refs) == 0.0
    assert memorization.nearest_distance(scenes.to_array(views[6]), quality.photo_references()) > 0.0


def test_bench_settings_are_read_and_checked_by_the_config_loader():
    """--set snr_gamma=5 becomes the float 5.0, and a name or a value the config refuses is refused here too."""
    from storage.config import ConfigError
    from trainer.toyworld import dreambooth

    assert dreambooth.checked_settings((("snr_gamma", "5"), ("crops_per_photo", "2"))) == {
        "snr_gamma": 5.0, "crops_per_photo": 2}
    with pytest.raises(ConfigError, match="not a \\[trainer\\] setting"):
        dreambooth.checked_settings((("no_such_setting", "1"),))
    with pytest.raises(ConfigError):
        dreambooth.checked_settings((("crops_per_photo", "0"),))
