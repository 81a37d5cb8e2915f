"""Posting images: the files the bot uploads keep their provenance marks when fitted under the limit."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from bot import posting
from storage import provenance


def test_uploaded_files_keep_the_marks_when_reencoded():
    """Every file fitted for upload (here re-encoded as JPEG) still reads as AI-generated."""
    pixels = np.random.default_rng(1).integers(0, 256, (384, 384, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", pnginfo=provenance.png_info(provenance.Marks("sd15", seed=9)))
    files = posting.fitted_files([buf.getvalue()] * 2, 120_000, "image")
    reports = [provenance.read(f.fp.getvalue()) for f in files]
    assert [f.filename for f in files] == ["image-1.jpg", "image-2.jpg"]
    assert all(r.ai_generated and r.seed == 9 for r in reports)
