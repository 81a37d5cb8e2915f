"""The invisible watermark: 48 bits in the image's brightness that say "AI-generated", read back by `detect`.

Built from the `invisible-watermark` package (import name `imwatermark`), as diffusers' SDXL pipeline
is, with the same 48-bit message (Stability AI's, `StableDiffusionXLWatermarker`), but a sturdier
method. SDXL's `dwtDct` (the largest AC coefficient of each 4x4 DCT block of the U channel's Haar
approximation) does not survive a JPEG re-encode at quality 90: after one, our measurements on
scikit-image photos read 44-56% of the bits, as chance would. Here each bit is the quantised largest
singular value of a 4x4 DCT block of the *luma* channel's Haar approximation (the package's
`dwtDctSvd` per-block step, scale 36), repeated over the whole image and decided by majority; it
reads 100% after JPEG q90 at 512 px (PSNR about 43 dB). The package's own `encode` also swaps the
horizontal and vertical detail bands when it rebuilds the image; the transform is done here so they
stay in place. The package's own decoder still reads the mark:
`WatermarkDecoder("bits", 48).decode(bgr, "dwtDctSvd", scales=[36, 0, 0])` (on images of 256x256 or more).

Each bit needs at least one 8x8-pixel block, so an image under 48 blocks (e.g. 48x48) is too small to
carry it. At 64 px, the demo's size, there are 64 blocks, one or two per bit rather than 85 at 512 px:
the mark still reads after JPEG q90 on the five scikit-image photos (44 to 48 of 48 bits), with less
to spare (see tests/trainer/test_watermark.py). Resizing or cropping loses it at any size.
`imwatermark` imports torch and OpenCV at import time: this module lives in trainer/ and the bot never
imports it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

MESSAGE = 0b101100111110110010010000011110111011000110011110  # SDXL's (Stability AI's) 48-bit message
BITS = tuple(int(bit) for bit in bin(MESSAGE)[2:])
SCALE = 36  # quantisation step of each block's largest singular value: larger is sturdier and more visible
BLOCK = 4  # DCT block side in the Haar approximation (8x8 image pixels)
MATCH = 42  # bits of 48 that must agree: an unmarked image reaches this by chance with p < 1e-7


@dataclass(frozen=True)
class Detection:
    found: bool
    matching: int  # message bits read back correctly
    total: int = len(BITS)


def load() -> None:
    """Import the package now: a worker with `trainer.watermark = true` fails at start, not at its first image.

    Raises ImportError saying what to install (opencv-python, which the package pulls in, may also need
    the system's libGL).
    """
    import importlib

    try:
        for name in ("pywt", "imwatermark.dwtDctSvd"):
            importlib.import_module(name)
    except ImportError as exc:
        raise ImportError(f"the invisible-watermark package cannot be loaded ({exc}): install it with "
                          "`pip install invisible-watermark`, or set trainer.watermark = false") from exc


def fits(width: int, height: int) -> bool:
    """The image has a block for every bit of the message."""
    return (height // (2 * BLOCK)) * (width // (2 * BLOCK)) >= len(BITS)


def embed(image: Image.Image) -> Image.Image:
    """A copy of `image` (RGB) carrying the watermark; ValueError when it is too small to carry one."""
    import pywt
    from imwatermark.dwtDctSvd import EmbedDwtDctSvd

    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    if not fits(rgb.shape[1], rgb.shape[0]):
        raise ValueError(f"a {rgb.shape[1]}x{rgb.shape[0]} image is too small to carry a watermark")
    luma = _luma(rgb)
    rows, cols = _cropped(luma)
    approx, details = pywt.dwt2(luma[:rows, :cols], "haar")
    EmbedDwtDctSvd(list(BITS), wmLen=len(BITS), scales=[SCALE, 0, 0], block=BLOCK).encode_frame(approx, SCALE)
    marked = luma.copy()
    marked[:rows, :cols] = pywt.idwt2((approx, details), "haar")  # details unswapped (the package swaps them)
    # Same chroma, new luma: in YUV, R, G and B each move by exactly the change in Y.
    out = np.clip(np.rint(rgb + (marked - luma)[..., None]), 0, 255).astype(np.uint8)
    return Image.fromarray(out, "RGB")


def detect(image: Image.Image) -> Detection | None:
    """How many message bits the image carries; None when it is too small to carry a watermark at all."""
    import pywt
    from imwatermark.dwtDctSvd import EmbedDwtDctSvd

    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    if not fits(rgb.shape[1], rgb.shape[0]):
        return None
    luma = _luma(rgb)
    rows, cols = _cropped(luma)
    approx, _ = pywt.dwt2(luma[:rows, :cols], "haar")
    votes = EmbedDwtDctSvd([], wmLen=len(BITS), block=BLOCK).decode_frame(approx, SCALE, [[] for _ in BITS])
    read = [int(np.mean(v) > 0.5) for v in votes]
    matching = sum(r == b for r, b in zip(read, BITS, strict=True))
    return Detection(found=matching >= MATCH, matching=matching)


def _cropped(luma: np.ndarray) -> tuple[int, int]:
    """Rows and columns that make whole blocks after the Haar transform (a multiple of 8 pixels)."""
    step = 2 * BLOCK
    return luma.shape[0] // step * step, luma.shape[1] // step * step


def _luma(rgb: np.ndarray) -> np.ndarray:
    """Y of YUV (BT.601 weights, as OpenCV's COLOR_RGB2YUV, which the package's decoder uses)."""
    return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
