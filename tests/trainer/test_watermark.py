"""The invisible watermark: read back after a JPEG re-encode, absent from real photos, honest about size."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from storage.sample_photos import sample_image
from trainer import watermark


def photo(side: int, name: str = "astronaut") -> Image.Image:
    return sample_image(name).convert("RGB").resize((side, side), Image.Resampling.LANCZOS)


def jpeg(image: Image.Image, quality: int = 90) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


@pytest.mark.parametrize("side", [512, 64])
@pytest.mark.parametrize("name", ["astronaut", "coffee"])
def test_watermark_survives_a_jpeg_reencode_at_quality_90(name, side):
    """Embedded in a real photo at the generated sizes (512 px; 64 px, the demo's), found after JPEG q90."""
    found = watermark.detect(jpeg(watermark.embed(photo(side, name))))
    assert found is not None and found.found


def test_a_real_photo_carries_no_watermark():
    """An unmarked photograph agrees with the message no better than chance."""
    found = watermark.detect(photo(512, "chelsea"))
    assert found is not None and not found.found and found.matching < watermark.MATCH


def test_the_watermark_is_invisible():
    """Embedding changes the photo by less than 1% of full scale on average (PSNR over 38 dB)."""
    before = np.asarray(photo(512), dtype=float)
    after = np.asarray(watermark.embed(photo(512)), dtype=float)
    assert 10 * np.log10(255 ** 2 / np.mean((after - before) ** 2)) > 38


def test_an_image_too_small_carries_none():
    """48x48 has fewer 8x8 blocks than message bits: embed refuses, detect says None."""
    assert not watermark.fits(48, 48) and watermark.fits(56, 56)
    with pytest.raises(ValueError, match="too small"):
        watermark.embed(photo(48))
    assert watermark.detect(photo(48)) is None


def test_the_packages_own_decoder_reads_the_mark():
    """invisible-watermark's WatermarkDecoder (dwtDctSvd on luma) reads our 48 bits after JPEG q90."""
    from imwatermark import WatermarkDecoder

    bgr = np.asarray(jpeg(watermark.embed(photo(512))), dtype=np.float32)[:, :, ::-1].copy()
    bits = WatermarkDecoder("bits", len(watermark.BITS)).decode(bgr, "dwtDctSvd", scales=[watermark.SCALE, 0, 0])
    assert [int(b) for b in bits] == list(watermark.BITS)
