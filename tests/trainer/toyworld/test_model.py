"""The shipped pretrained toy model: small, in the diffusers layout, and it draws what it is asked."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.toyworld import measure

MODEL = measure.DEFAULT_MODEL


def test_model_is_under_10_mb():
    """The shipped toy model stays under 10 MB, as the repository carries it."""
    assert sum(p.stat().st_size for p in Path(MODEL).rglob("*") if p.is_file()) < 10 * 1024 * 1024


def test_the_identifier_reaches_the_unet():
    """The text encoder tells "a photo of sks circle" from "a photo of a circle" where the identifier stands.

    DreamBooth binds the subject to the identifier; if the encoder's output for it were the class
    prompt's, the class images of prior preservation would win (the model before the identity loss
    gave cosine 0.999 there). Two identifiers also differ from each other.
    """
    import torch
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(str(MODEL), safety_checker=None, requires_safety_checker=False)

    def states(prompt):
        ids = pipe.tokenizer(prompt, padding="max_length", max_length=77, return_tensors="pt").input_ids
        with torch.no_grad():
            return pipe.text_encoder(ids)[0][0].float()

    place = 4  # <start> a photo of [sks] circle
    cls, sks, ohwx = (states(f"a photo of {w} circle") for w in ("a", "sks", "ohwx"))
    assert torch.cosine_similarity(sks[place], cls[place], dim=0) < 0.5
    assert torch.cosine_similarity(ohwx[place], cls[place], dim=0) < 0.5
    assert torch.cosine_similarity(sks[place], ohwx[place], dim=0) < 0.95


# Measured on the shipped model (python -m trainer.toyworld.measure --n 90): shape 0.70, colour 0.89, background
# 0.99, named size 0.93, named place 0.40, pairs 0.03. Shape is read strictly (a lumpy circle is a blob, see
# classifier.py); places and pairs are what the model draws worst, and what the held-out contexts that ask for
# them miss (README, Quality).
FLOORS = {"shape": 0.6, "colour": 0.8, "background": 0.9, "size": 0.8}


@pytest.mark.slow
@pytest.mark.parametrize("part", list(FLOORS))
def test_generations_are_recognisably_right(toy_accuracy, part):
    """The classifier finds the requested shape, colour, background and named size in most samples (FLOORS)."""
    assert getattr(toy_accuracy, part) >= FLOORS[part]


@pytest.fixture(scope="module")
def toy_accuracy():
    import torch

    from trainer import models

    torch.set_num_threads(2)
    pipe = models.load_pipeline(str(MODEL), models.pick_runtime("cpu"))
    return measure.prompt_accuracy(pipe, 60)[0]
