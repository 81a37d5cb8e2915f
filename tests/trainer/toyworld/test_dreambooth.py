"""DreamBooth on the toy world through `dreambot train`, one training seed, scored as bench.quality scores it (CI-sized).

The run with prior preservation is the default preset's whole run, scored on all 12 contexts at 32
samples each; the run without prior preservation, which only has to show the class collapsing, is
sampled on the class prompt alone. On the shipped pretrained toy model.

Issue 12's held-out targets (subject fidelity 0.9 with its interval above 0.8, prompt fidelity
0.9) are not met yet (README, Quality); copies meet theirs (0.1) over 3 seeds (median 0.094) but
not on seed 0 alone. These tests hold what the trainer reaches, with room for the spread between
training seeds (another CPU's arithmetic moves a run as much as another seed does), and the targets
that are met (class collapse, with and without prior preservation). Measured
2026-12-02 with `python -m bench.quality --train-seeds 3`, seeds 0, 1 and 2: best held-out
background 0.875 (cyan), 0.594 (grey) and 0.688 (pink); held out pooled 0.266, 0.148 and 0.191;
training contexts pooled 0.422, 0.250 and 0.086 (too spread to hold a useful floor); copies 0.115,
0.078 and 0.094; class collapse 0.0 for all three.
"""

from __future__ import annotations

import pytest

from trainer.toyworld import dreambooth

STEPS = {True: None, False: None}  # both the default preset's whole run, as bench.quality runs them

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[bool, dict]:
    import torch

    torch.set_num_threads(1)  # a model this small trains faster on one thread than on two (measured on 2 cores)
    out = {}
    for prior in (True, False):
        spec = dreambooth.RunSpec(prior_preservation=prior, steps=STEPS[prior], checkpoint_every=STEPS[prior],
                                  contexts=dreambooth.CONTEXTS if prior else ())
        out[prior] = dreambooth.run(spec, tmp_path_factory.mktemp("with" if prior else "without"))
    print(dreambooth.format_tables([out[True]]))
    return out


HELD_OUT_BACKGROUNDS = ("purple", "cyan", "pink", "grey")


def test_the_subject_appears_on_a_background_its_photos_never_show(runs):
    """On at least one background no photo has, half the samples or more show the subject, strictly read."""
    assert max(runs[True]["contexts"][bg]["subject_fidelity"] for bg in HELD_OUT_BACKGROUNDS) >= 0.5


def test_held_out_contexts_pooled_show_the_subject_sometimes(runs):
    """Pooled over all 8 held-out contexts (0.27, 0.15 and 0.19 measured), at least 10% of samples show the subject."""
    assert runs[True]["heldout"]["subject_fidelity"] >= 0.1


def test_held_out_backgrounds_are_followed(runs):
    """Every held-out background context keeps the background asked for in at least 90% of samples."""
    assert all(runs[True]["contexts"][bg]["prompt_fidelity"] >= 0.9 for bg in HELD_OUT_BACKGROUNDS)


def test_the_photos_are_mostly_not_replayed(runs):
    """At most 20% of samples lie within a copy's distance of a training image (0.08-0.12 measured; target 0.1)."""
    assert runs[True]["copies"] <= 0.2


def test_prior_preservation_prevents_class_collapse(runs):
    """With prior preservation at most 10% of plain 'a photo of a circle' samples show the subject."""
    assert runs[True]["class_collapse"] <= 0.1


def test_without_prior_preservation_the_class_collapses(runs):
    """Turning prior preservation off makes at least half of the class samples the subject."""
    assert runs[False]["class_collapse"] >= 0.5
