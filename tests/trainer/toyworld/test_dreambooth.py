"""DreamBooth on the toy world through `dreambot train`, with and without prior preservation (CI-sized).

The run uses the repository's config and default preset with fewer steps (see STEPS) and one
checkpoint, on the shipped pretrained toy model; each failure mode has its own test.
"""

from __future__ import annotations

import pytest

from trainer.toyworld import dreambooth

STEPS = 400  # the balanced preset's 800, halved to fit CI's time on two cores
SEEDS = 6  # samples per prompt: 4 backgrounds x 6 subject samples, 12 class samples

pytestmark = pytest.mark.slow

# Known failure (issue 5 stays open): the subject is not learned well enough yet. Measured at 400 steps:
# fidelity 0.25 with prior preservation (0.21 without); the full 800 steps reach 0.69 (bench.quality).
# Collapse without prior preservation is 0.83 here against 0.00 with it. strict: the day it passes, CI says
# to drop the marker.
NOT_LEARNED_YET = pytest.mark.xfail(strict=True, reason="the toy subject is not learned yet (issue 5)")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[bool, dict]:
    import torch

    torch.set_num_threads(2)
    out = {}
    for prior in (True, False):
        spec = dreambooth.RunSpec(prior_preservation=prior, steps=STEPS, checkpoint_every=STEPS, seeds_per_prompt=SEEDS)
        out[prior] = dreambooth.run(spec, tmp_path_factory.mktemp("with" if prior else "without"))
    print(dreambooth.format_table([out[True], out[False]]))
    return out


@NOT_LEARNED_YET
def test_subject_is_learned(runs):
    """The identifier brings the subject's yellow-over-black in at least 80% of samples."""
    assert runs[True]["subject_fidelity"] >= 0.8


def test_prompts_are_followed(runs):
    """The requested background colour is respected in at least 80% of subject samples."""
    assert runs[True]["prompt_fidelity"] >= 0.8


def test_prior_preservation_prevents_class_collapse(runs):
    """With prior preservation at most 20% of plain 'a photo of a circle' samples show the subject."""
    assert runs[True]["class_collapse"] <= 0.2


def test_without_prior_preservation_the_class_collapses_more(runs):
    """Turning prior preservation off makes clearly more class samples look like the subject."""
    assert runs[False]["class_collapse"] >= runs[True]["class_collapse"] + 0.2
