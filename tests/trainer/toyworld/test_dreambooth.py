"""DreamBooth on the toy world through `dreambot train`, with and without prior preservation (CI-sized).

The run with prior preservation is the default preset's whole run (800 steps) with one checkpoint;
the run without it, which only has to show the class collapsing, is halved (see STEPS), and each
prompt gets 6 samples instead of bench.quality's 8. On the shipped pretrained toy model; each
failure mode has its own test.
"""

from __future__ import annotations

import pytest

from trainer.toyworld import dreambooth

STEPS = {True: 800, False: 400}  # with prior preservation: the balanced preset's; without: halved for CI's time
SEEDS = 6  # samples per prompt: 4 backgrounds x 6 subject samples, 12 class samples

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[bool, dict]:
    import torch

    torch.set_num_threads(2)
    out = {}
    for prior in (True, False):
        spec = dreambooth.RunSpec(prior_preservation=prior, steps=STEPS[prior], checkpoint_every=STEPS[prior],
                                  seeds_per_prompt=SEEDS)
        out[prior] = dreambooth.run(spec, tmp_path_factory.mktemp("with" if prior else "without"))
    print(dreambooth.format_table([out[True], out[False]]))
    return out


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
