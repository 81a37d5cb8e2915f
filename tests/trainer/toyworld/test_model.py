"""The shipped pretrained toy model: small, in the diffusers layout, and it draws what it is asked."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.toyworld import measure

MODEL = measure.DEFAULT_MODEL


def test_model_is_under_10_mb():
    """The shipped toy model stays under 10 MB, as the repository carries it."""
    assert sum(p.stat().st_size for p in Path(MODEL).rglob("*") if p.is_file()) < 10 * 1024 * 1024


@pytest.mark.slow
@pytest.mark.parametrize("part", ["shape", "colour", "background"])
def test_generations_are_recognisably_right(toy_accuracy, part):
    """The classifier finds the requested shape, object colour and background in at least 80% of samples."""
    assert getattr(toy_accuracy, part) >= 0.8


@pytest.fixture(scope="module")
def toy_accuracy():
    import torch

    from trainer import models

    torch.set_num_threads(2)
    pipe = models.load_pipeline(str(MODEL), models.pick_runtime("cpu"))
    return measure.prompt_accuracy(pipe, 60)[0]
