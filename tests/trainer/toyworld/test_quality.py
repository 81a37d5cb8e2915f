"""The toy-world quality figures from classifier readings."""

from __future__ import annotations

import pytest

from trainer.toyworld import quality
from trainer.toyworld.classifier import Reading


def reading(background: str, banded: bool) -> Reading:
    shares = {"yellow": 0.6, "black": 0.4} if banded else {"red": 1.0}
    rows = {"yellow": 0.3, "black": 0.7} if banded else {"red": 0.5}
    return Reading(background, "circle", "yellow" if banded else "red", shares, rows, 0.78, 1.0)


def test_subject_fidelity_counts_banded_samples():
    assert quality.subject_fidelity([reading("red", True), reading("red", False)]) == 0.5


def test_prompt_fidelity_compares_with_the_requested_background():
    reads = [reading("red", True), reading("blue", True), reading("white", True)]
    assert quality.prompt_fidelity(reads, ["red", "green", "white"]) == pytest.approx(2 / 3)


def test_class_collapse_counts_class_samples_showing_the_subject():
    assert quality.class_collapse([reading("red", False)] * 3 + [reading("red", True)]) == 0.25


def test_score_reports_counts():
    q = quality.score([reading("red", True)], ["red"], [reading("red", False)] * 2)
    assert (q.subject_fidelity, q.prompt_fidelity, q.class_collapse, q.n_subject, q.n_class) == (1.0, 1.0, 0.0, 1, 2)
