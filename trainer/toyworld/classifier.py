"""Reading a toy-world image with code alone: background colour, object colour, shape, and the subject's two colours.

No learned model: the background is the median of the border pixels, the object is the largest
connected region of pixels far from it, its colour the most common palette colour inside it (a
pixel erosion away from its anti-aliased edge), and its shape comes from its geometry:
    square    fills nearly all of its bounding box (pi/4 = 0.79 for a circle, 1/2 for a triangle);
    triangle  is much wider in the bottom quarter of its box than in the top quarter;
    circle    otherwise.
The subject's pattern is present when yellow and black each cover a good share of the object and
the yellow lies above the black (its pixels' mean row is higher by a share of the object's height):
blobs of both colours in any arrangement are not the subject.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from trainer.toyworld.scenes import PALETTE, SUBJECT_BANDS

OBJECT_DISTANCE = 80.0  # RGB distance from the background colour that counts as object (palette gaps are >170)
MIN_OBJECT_FRACTION = 0.02  # smaller regions are noise, not an object
SQUARE_FILL = 0.88
TRIANGLE_TAPER = 1.8
BAND_SHARE = 0.15  # each subject colour must cover this share of the object's interior
BAND_ORDER_MARGIN = 0.1  # the first band's mean row lies at least this share of the object's height above the next

_NAMES = tuple(PALETTE)
_COLOURS = np.array([PALETTE[n] for n in _NAMES], dtype=np.float32)


@dataclass(frozen=True)
class Reading:
    background: str
    shape: str | None  # None: no object found
    colour: str | None
    shares: dict[str, float]  # palette colour -> share of the object's interior
    rows: dict[str, float]  # palette colour -> mean row of its interior pixels, 0 at the object's top, 1 at its bottom
    fill: float  # object area / bounding-box area
    taper: float  # bottom-quarter width / top-quarter width

    @property
    def subject_pattern(self) -> bool:
        if not all(self.shares.get(c, 0.0) >= BAND_SHARE for c in SUBJECT_BANDS):
            return False
        return all(self.rows[a] + BAND_ORDER_MARGIN <= self.rows[b] for a, b in itertools.pairwise(SUBJECT_BANDS))


def nearest_colour(rgb: np.ndarray) -> np.ndarray:
    """Index into the palette of the nearest colour, for [..., 3] pixels."""
    d = ((rgb[..., None, :].astype(np.float32) - _COLOURS) ** 2).sum(-1)
    return d.argmin(-1)


def border_pixels(image: np.ndarray, width: int = 2) -> np.ndarray:
    return np.concatenate([image[:width].reshape(-1, 3), image[-width:].reshape(-1, 3),
                           image[:, :width].reshape(-1, 3), image[:, -width:].reshape(-1, 3)])


def object_mask(image: np.ndarray, background_rgb: np.ndarray) -> np.ndarray:
    """The largest connected region of pixels far from the background colour, as a bool [H, W] mask."""
    far = np.linalg.norm(image.astype(np.float32) - background_rgb, axis=-1) > OBJECT_DISTANCE
    labels, n = ndimage.label(far)
    if n == 0:
        return far
    sizes = ndimage.sum(far, labels, index=range(1, n + 1))
    return labels == (int(np.argmax(sizes)) + 1)


def shape_features(mask: np.ndarray) -> tuple[float, float]:
    """(fill of the bounding box, bottom-quarter width / top-quarter width)."""
    rows, cols = np.nonzero(mask)
    top, bottom, left, right = rows.min(), rows.max(), cols.min(), cols.max()
    box = mask[top:bottom + 1, left:right + 1]
    fill = float(box.mean())
    h = box.shape[0]
    q = max(1, h // 4)
    widths = box.sum(1).astype(np.float32)
    taper = float(widths[-q:].mean() / max(widths[:q].mean(), 0.5))
    return fill, taper


def classify_shape(fill: float, taper: float) -> str:
    if taper >= TRIANGLE_TAPER:
        return "triangle"
    if fill >= SQUARE_FILL:
        return "square"
    return "circle"


def read(image: np.ndarray) -> Reading:
    """What a [H, W, 3] uint8 toy-world image shows."""
    bg_rgb = np.median(border_pixels(image), axis=0)
    background = _NAMES[int(nearest_colour(bg_rgb))]
    mask = object_mask(image, bg_rgb)
    if mask.sum() < MIN_OBJECT_FRACTION * mask.size:
        return Reading(background, None, None, {}, {}, 0.0, 0.0)
    inner = ndimage.binary_erosion(mask)
    if inner.sum() < 4:
        inner = mask
    idx = nearest_colour(image[inner])
    counts = np.bincount(idx, minlength=len(_NAMES)) / len(idx)
    shares = {n: float(c) for n, c in zip(_NAMES, counts, strict=True) if c > 0}
    colour = _NAMES[int(counts.argmax())]
    fill, taper = shape_features(mask)
    return Reading(background, classify_shape(fill, taper), colour, shares, colour_rows(mask, inner, idx),
                   fill, taper)


def colour_rows(mask: np.ndarray, inner: np.ndarray, idx: np.ndarray) -> dict[str, float]:
    """Mean row of each palette colour's interior pixels (idx, in `inner`'s order), relative to the object's extent."""
    rows = np.nonzero(mask)[0]
    top, height = rows.min(), max(int(rows.max() - rows.min()), 1)
    y = (np.nonzero(inner)[0] - top) / height
    return {_NAMES[k]: float(y[idx == k].mean()) for k in np.unique(idx)}
