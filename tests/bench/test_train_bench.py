"""`python -m bench.train --proxy`: one quick alternation writes bench/out/train.json's shape (no timed assertions)."""

from __future__ import annotations

import json
import os

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"

FIGURES = ("step_ratio", "job_ratio", "second_subject_ratio", "warm_start_s")


@pytest.fixture(scope="module")
def proxy_json(tmp_path_factory) -> dict:
    """The JSON of one quick alternation of the proxy bench, run through its command-line entry."""
    from bench.train import main

    out = tmp_path_factory.mktemp("bench") / "train.json"
    assert main(["--proxy", "--quick", "--alternations", "1", "--out", str(out)]) == 0
    return json.loads(out.read_text())


def test_has_the_issue_keys(proxy_json):
    """The file is {"proxy": {...}} with the split, SD 1.5's split, each figure and the alternations."""
    assert set(proxy_json) == {"proxy"}
    assert {"flop_split", "sd15_split", *FIGURES, "alternations"} <= set(proxy_json["proxy"])
    assert proxy_json["proxy"]["alternations"] == 1


@pytest.mark.parametrize("figure", FIGURES)
def test_figure_is_a_positive_number(proxy_json, figure):
    """Each ratio (and the warm start) is a positive number, with its min, median and max."""
    value = proxy_json["proxy"][figure]
    spread = proxy_json["proxy"]["figures"][figure]
    assert isinstance(value, float) and value > 0
    assert spread["min"] <= spread["median"] == value <= spread["max"]


def test_flop_splits_are_shares(proxy_json):
    """The proxy's and SD 1.5's FLOP splits each give the VAE, text encoder and UNet shares summing to 1."""
    for key in ("flop_split", "sd15_split"):
        split = proxy_json["proxy"][key]
        assert set(split) == {"vae", "text", "unet"}
        assert sum(split.values()) == pytest.approx(1.0)


def test_marked_quick(proxy_json):
    """A --quick run says so, so its figures are never taken for a measurement."""
    assert proxy_json["proxy"]["quick"] is True
