"""dreambot's own models carry model cards, so their license is read the way a downloaded model's is."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage import licenses

TOYWORLD = Path(__file__).resolve().parents[2] / "trainer" / "toyworld" / "model"


@pytest.mark.parametrize("which", ["tiny", "toyworld"])
def test_dreambot_s_models_state_their_license_in_a_card(which, tiny_model):
    """`make-tiny-model`'s folder and the shipped toy-world model resolve from their README.md."""
    found = licenses.resolve(str(tiny_model if which == "tiny" else TOYWORLD))
    assert (found.license, found.source) == ("other", "model card")
    assert found.name.startswith("dreambot test-model terms")
