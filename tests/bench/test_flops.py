"""bench.flops: one plain-loop training sample's FLOPs by part, counted on the meta device."""

from __future__ import annotations

import pytest

from bench import flops


def test_proxy_split_is_within_ten_percent_of_sd15():
    """The proxy at its resolution weighs VAE, text encoder and UNet as SD 1.5 does at 512 px, within 10% each."""
    import types

    import torch

    from trainer.tiny_model import PROXY_RESOLUTION, build_random_models

    with torch.device("meta"):
        unet, vae, text_encoder = build_random_models("proxy")
    proxy = flops.split(types.SimpleNamespace(unet=unet, vae=vae, text_encoder=text_encoder), PROXY_RESOLUTION)
    assert flops.within(proxy, flops.sd15_split()), (proxy, flops.sd15_split())


def test_sd15_counts_match_the_known_figures():
    """SD 1.5 at 512 px: VAE encode about 1.1 TFLOP, UNet forward + backward with frozen base about 1.73 TFLOP."""
    counted = flops.sd15_flops()
    assert counted["vae"] / 1e12 == pytest.approx(1.1, rel=0.05)
    assert counted["unet"] / 1e12 == pytest.approx(1.73, rel=0.02)
    assert counted["text"] / 1e12 == pytest.approx(0.0133, rel=0.05)


def test_split_shares_sum_to_one():
    """The three shares of a real (CPU) pipeline cover the whole sample."""
    from trainer.tiny_model import build_random_pipeline

    shares = flops.split(build_random_pipeline("tiny"), 64)
    assert set(shares) == {"vae", "text", "unet"}
    assert sum(shares.values()) == pytest.approx(1.0)


def test_count_leaves_the_pipeline_untouched():
    """Counting adds no adapter to the pipeline, changes no requires_grad flag and moves no weight."""
    from trainer.tiny_model import build_random_pipeline

    pipe = build_random_pipeline("tiny")
    before = [(name, p.requires_grad, p.device) for name, p in pipe.unet.named_parameters()]
    flops.count(pipe, 64)
    assert [(name, p.requires_grad, p.device) for name, p in pipe.unet.named_parameters()] == before
    assert getattr(pipe.unet, "peft_config", None) is None


@pytest.mark.parametrize(("a", "expected"), [
    ({"vae": 0.43, "text": 0.0054, "unet": 0.56}, True),
    ({"vae": 0.45, "text": 0.0050, "unet": 0.50}, False),
    ({"vae": 0.40, "text": 0.0056, "unet": 0.5944}, False),
])
def test_within_compares_each_share_relative_to_the_reference(a, expected):
    """Each share must be within 10% of the reference's own value (0.40 allows 0.36-0.44; 0.005 allows 0.0045-0.0055)."""
    assert flops.within(a, {"vae": 0.40, "text": 0.0050, "unet": 0.5950}) is expected
