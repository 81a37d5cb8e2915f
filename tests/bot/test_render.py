"""Progress bars, durations and message fitting."""

from __future__ import annotations

import pytest

from bot import render


@pytest.mark.parametrize(("step", "total", "expected"), [
    (0, 10, "[----------] 0%"), (5, 10, "[#####-----] 50%"), (12, 10, "[##########] 100%"), (3, 0, "[----------] 0%"),
])
def test_progress_bar(step, total, expected):
    """The bar fills in proportion and clamps to 0..100%."""
    assert render.progress_bar(step, total, width=10) == expected


@pytest.mark.parametrize(("seconds", "expected"), [
    (None, "unknown"), (45, "45 s"), (90, "1 min 30 s"), (120, "2 min"), (3900, "1 h 5 min"),
])
def test_duration(seconds, expected):
    """Time left reads as seconds, minutes or hours."""
    assert render.duration(seconds) == expected


def test_intake_report_keeps_the_whole_consent_text():
    """However many findings, the consent text is shown in full within 2,000 characters."""
    text = render.intake_report(["x" * 300] * 10, "CONSENT " * 50)
    assert len(text) <= 2000 and ("CONSENT " * 50) in text


def test_status_before_the_first_step_shows_what_is_happening():
    """While class images are made there is no step count yet: the message says what is going on instead."""
    text = render.training_status("rex", step=0, total=0, eta_seconds=None, message="Generating 4 class images.")
    assert "0/0" not in text and "unknown" not in text and "Generating 4 class images." in text


def test_status_during_training_shows_step_time_left_and_loss():
    """Once training runs, the status names the step, the time left and the loss."""
    text = render.training_status("rex", step=40, total=800, eta_seconds=90, loss=0.1234)
    assert "step 40/800, about 1 min 30 s left, loss 0.1234" in text
