"""The offline demo: the real bot, the real worker and a scripted user; on the toy-world model, its pictures are read
by the toy world's classifier."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bot.demo import DEMO_IMAGINE, DEMO_SUBJECT, DemoWorld, _Annotator, run_demo
from bot.emulator.transcript import Transcript
from storage.prompts import expand
from storage.subjects import Subject
from trainer.toyworld import classifier, scenes
from trainer.toyworld.contexts import HELDOUT
from trainer.toyworld.subject import CLASS_NOUN

# The demo is seeded end to end: on one machine it draws the same pictures every run, and another CPU's arithmetic
# draws others. So the thresholds ask what a trainer meeting bench.quality's target (held-out subject fidelity
# 0.9) would give on nearly any draw: half the final grid (1 of its 2 tiles) and half the /imagine images show the
# subject (the classifier's strict reading: one yellow-over-black circle, nothing else), and half show the context.
# At a rate of 0.9 per image that holds 99% of the time (1 of 2) and 99.6% (2 of 4).
MIN_FINAL_SUBJECT = 0.5
MIN_IMAGINE_SUBJECT = 0.5
MIN_IMAGINE_CONTEXT = 0.5  # the background, and where asked the place and size, as the prompt says
TILE = scenes.RESOLUTION
# The final grid's check still fails on the shipped toy model (2026-12-02): its prompt, "a photo of sks circle", names
# no background, and the model draws the subject there with a red band (red 0.16-0.28 > the 0.15 other colours
# allowed). The /imagine images on cyan and grey pass. Strict: the check fails the suite once it starts passing,
# until its marker is removed.
NOT_YET = pytest.mark.xfail(strict=True, reason="the shipped toy model does not yet draw the subject this well "
                                                "(see bench.quality); remove once it does")


def tiles(path: Path) -> list[np.ndarray]:
    """A grid's tiles (RESOLUTION px squares, no gaps), or the one image."""
    image = np.asarray(Image.open(path).convert("RGB"))
    return [image[r:r + TILE, c:c + TILE] for r in range(0, image.shape[0], TILE)
            for c in range(0, image.shape[1], TILE)]


def seen(reading: classifier.Reading) -> str:
    """What the classifier read, short: 'blue: circle yellow 0.45 black 0.40 (+ 1 more)'."""
    if reading.main is None:
        return f"{reading.background}: nothing"
    shares = " ".join(f"{c} {v:.2f}" for c, v in sorted(reading.main.shares.items(), key=lambda kv: -kv[1])[:3])
    more = f" (+ {len(reading.objects) - 1} more)" if len(reading.objects) > 1 else ""
    return f"{reading.background}: {reading.main.shape} {shares}{more}"


def heldout_context(prompt: str):
    """The held-out context whose prompt the /imagine prompt becomes once the bot puts the token in for the name."""
    subject = Subject(id=1, owner_id=1, guild_id=1, name=DEMO_SUBJECT, token="sks", class_noun=CLASS_NOUN,
                      state="trained", adapter_artifact_id=1, created_at=0.0, updated_at=0.0)
    text = expand(prompt, [subject]).text
    return next((c for c in HELDOUT if c.prompt(subject.token) == text), None)


@pytest.fixture(scope="module")
def toy_demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    assert asyncio.run(run_demo(out)) == 0
    return out


def test_every_imagine_prompt_is_a_heldout_context():
    """Each /imagine prompt reads, once the subject's name is swapped for its token, as a held-out context."""
    assert all(heldout_context(prompt) is not None for prompt, _ in DEMO_IMAGINE)


def test_each_posted_picture_gets_a_line_saying_what_it_should_show():
    """A line that posts a grid or images is followed by a [demo] line per file saying what it should show."""
    world = DemoWorld(model_dir=Path("model"), checker_dir=Path("model"), name="bee ball", class_noun="circle",
                      preset="quick", photos=[], trainer={}, imagine=(("bee ball on grey", "it on grey"),), about="",
                      shows={"class": "circles", "progress": "it, more and more", "final": "it"})
    transcript = Transcript()
    transcript.on_event(_Annotator(transcript, world))
    transcript.add("[#general] dreambot: **bee ball** is trained. [files: bee ball-final-grid.png 12 KB]")
    transcript.add("[#general] dreambot edited: **bee ball on grey**\n    seeds: 7, 8 [files: image-1.png 6 KB, "
                   "image-2.png 6 KB] [buttons: Re-roll | Vary]")
    assert [line for line in transcript.lines if line.startswith("[demo]")] == [
        "[demo] bee ball-final-grid.png should show it",
        "[demo] image-1.png and image-2.png should show it on grey"]


@pytest.mark.slow
@NOT_YET
def test_toy_demo_final_grid_shows_the_subject(toy_demo):
    """Enough of the final grid's tiles (the instance prompt) show the yellow-over-black circle."""
    [grid] = (toy_demo / "files").glob("*-final-grid.png")
    readings = [classifier.read(t) for t in tiles(grid)]
    assert sum(r.subject_pattern for r in readings) >= MIN_FINAL_SUBJECT * len(readings), [seen(r) for r in readings]


def imagine_readings(out: Path) -> list[tuple[object, classifier.Reading]]:
    """(held-out context, reading) for each /imagine image, in the order DEMO_IMAGINE asks (2 images each)."""
    images = sorted((out / "files").glob("*-image-*.png"), key=lambda p: (int(p.name.split("-")[0]), p.name))
    assert len(images) == 2 * len(DEMO_IMAGINE)
    contexts = [heldout_context(prompt) for prompt, _ in DEMO_IMAGINE for _ in range(2)]
    return [(c, classifier.read(tiles(p)[0])) for c, p in zip(contexts, images, strict=True)]


@pytest.mark.slow
def test_toy_demo_imagine_images_show_the_subject(toy_demo):
    """Enough of the /imagine images show the yellow-over-black circle (beside the named object, where one is)."""
    readings = imagine_readings(toy_demo)
    right = [context.subject_right(reading) for context, reading in readings]
    assert sum(right) >= MIN_IMAGINE_SUBJECT * len(right), [seen(r) for _, r in readings]


@pytest.mark.slow
def test_toy_demo_imagine_images_show_the_context_no_photo_has(toy_demo):
    """Enough of the /imagine images show what the prompt asks beside the subject: the background, place and size."""
    readings = imagine_readings(toy_demo)
    right = [context.prompt_right(reading) for context, reading in readings]
    assert sum(right) >= MIN_IMAGINE_CONTEXT * len(right), [seen(r) for _, r in readings]


@pytest.mark.slow
def test_toy_demo_says_what_each_picture_should_show(toy_demo):
    """The transcript has a [demo] line for the class images, each progress grid, the final grid and each image."""
    transcript = (toy_demo / "transcript.txt").read_text()
    for expected in ("[demo] files/class-images.png", "grid-step200.png should show", "final-grid.png should show",
                     *(f"should show {shows}" for _, shows in DEMO_IMAGINE)):
        assert expected in transcript


@pytest.mark.slow
async def test_random_model_demo_trains_and_imagines_with_the_real_worker(tmp_path, capsys):
    """/train, Confirm, progress, grids, Keep final and /imagine all happen, and the files are left behind."""
    assert await run_demo(tmp_path, random_model=True) == 0
    transcript = (tmp_path / "transcript.txt").read_text()
    for expected in ("alice clicked [Confirm]", "training is queued", "sample grid at step 10", "is trained",
                     "now uses the final version", "**chelsea in space**", "seeds: 7, 8"):
        assert expected in transcript
    files = sorted(p.name for p in (tmp_path / "files").iterdir())
    assert any(name.endswith("-final-grid.png") for name in files)
    assert sum(name.endswith(("image-1.png", "image-2.png")) for name in files) == 2
    assert "Traceback" not in capsys.readouterr().out
