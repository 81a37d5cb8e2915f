"""Fitting images under an upload limit."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from bot.images import fit_image


def noisy_png(side: int) -> bytes:
    pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def test_small_image_is_kept_as_png():
    """An image under the limit is sent unchanged."""
    data = noisy_png(32)
    assert fit_image(data, len(data), name="grid") == (data, "grid.png")


def test_large_image_becomes_a_smaller_jpeg():
    """An image over the limit is re-encoded (and downscaled) to fit."""
    data, name = fit_image(noisy_png(512), 50_000, name="grid")
    assert len(data) <= 50_000 and name == "grid.jpg" and Image.open(io.BytesIO(data)).format == "JPEG"


def marked_noisy_png(side: int) -> bytes:
    from storage.provenance import Marks, png_info

    pixels = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG",
                                 pnginfo=png_info(Marks(base_model="sd15", lora_sha256=("ab" * 32,), seed=5)))
    return buf.getvalue()


def test_a_jpeg_made_to_fit_keeps_the_provenance_marks():
    """Re-encoded (and downscaled) to JPEG, the image still says it is AI-generated, with model, LoRA and seed."""
    from storage import provenance

    data, name = fit_image(marked_noisy_png(512), 50_000, name="grid")
    report = provenance.read(data)
    assert name == "grid.jpg" and report.size[0] < 512
    assert report.ai_generated and (report.base_model, report.lora_sha256, report.seed) == ("sd15", ("ab" * 32,), 5)
