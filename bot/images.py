"""Making images fit Discord's upload limit: re-encode as JPEG, then downscale, until small enough.

A re-encoded copy keeps the provenance marks (storage/provenance.py): the PNG's XMP packet, which
says the image is AI-generated and names the base model, LoRA hashes and seed, goes into the JPEG.
"""

from __future__ import annotations

import io

from PIL import Image

from storage import provenance

QUALITIES = (90, 80, 70)
MIN_SIDE = 64


def fit_image(data: bytes, limit_bytes: int, *, name: str = "image") -> tuple[bytes, str]:
    """(bytes, filename) no larger than limit_bytes: the PNG as it is, or JPEG, downscaled if need be.

    Raises ValueError when even a tiny JPEG is over the limit.
    """
    if len(data) <= limit_bytes:
        return data, f"{name}.png"
    with Image.open(io.BytesIO(data)) as opened:
        image = opened.convert("RGB")
        keep = provenance.save_options(opened, "JPEG")  # the marks, carried into the JPEG
    while True:
        for quality in QUALITIES:
            out = _jpeg(image, quality, keep)
            if len(out) <= limit_bytes:
                return out, f"{name}.jpg"
        if min(image.size) <= MIN_SIDE:
            raise ValueError(f"cannot fit the image into {limit_bytes} bytes")
        scale = max(0.5, (limit_bytes / len(out)) ** 0.5 * 0.95)
        image = image.resize((max(MIN_SIDE, int(image.width * scale)), max(MIN_SIDE, int(image.height * scale))),
                             Image.Resampling.LANCZOS)


def _jpeg(image: Image.Image, quality: int, options: dict) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality, optimize=True, **options)
    return buf.getvalue()
