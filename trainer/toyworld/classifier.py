"""Reading a toy-world image with code alone: the background, each object's shape, colours and place.

No learned model. The background is the median of the border pixels; objects are the connected
regions of pixels far from it (holes filled), and anything far from it but too small to be an
object is clutter. For each object:
    colours   the share of each palette colour inside it (a pixel erosion away from its
              anti-aliased edge), and where each lies (mean row and column, 0 to 1 across the object);
    shape     triangle if much wider in the bottom quarter of its box than in the top quarter;
              square if it fills nearly all of its box; circle only if its box is about square
              and it covers closely (intersection over union) the disc of its own area centred on
              its centroid, which a lump, a bite or a cut-off chord does not;
              otherwise a blob, which no prompt asks for.
The subject is strict: exactly one object and no clutter; a circle; yellow and black each covering
a good share of it, nothing else more than a little; the yellow above the black, not beside it.
Scattered blobs of both colours, the pattern on a square or a triangle, a broken circle, two
objects and noise are all refused (tests/trainer/toyworld/test_classifier.py draws each of them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from trainer.toyworld.scenes import PALETTE, SUBJECT_BANDS

OBJECT_DISTANCE = 80.0  # RGB distance from the background colour that counts as object (palette gaps are >90)
MIN_OBJECT_FRACTION = 0.02  # smaller regions are clutter, not an object
MAX_CLUTTER = 0.01  # share of the image that may be stray object-coloured pixels beside the subject
SQUARE_FILL = 0.88
TRIANGLE_TAPER = 1.8
CIRCLE_ROUNDNESS = 0.92  # intersection over union with a disc of its area at its centroid (drawn circles: >= 0.97)
CIRCLE_ASPECT = 1.2  # the box's longer side over its shorter, at most
BAND_SHARE = 0.3  # each subject colour covers at least this share of the object's interior
OTHER_SHARE = 0.15  # all other colours together cover at most this share
BAND_ORDER_MARGIN = 0.2  # the yellow's mean row lies at least this share of the object's height above the black's
BAND_SIDE_MARGIN = 0.12  # and their mean columns differ by at most this share of its width: above, not beside

_NAMES = tuple(PALETTE)
_COLOURS = np.array([PALETTE[n] for n in _NAMES], dtype=np.float32)


@dataclass(frozen=True)
class Blob:
    """One object: its shape, colours, geometry and place (fractions of the image side)."""
    shape: str  # circle, square, triangle or blob
    colour: str  # the palette colour covering most of it
    shares: dict[str, float]  # palette colour -> share of the object's interior
    rows: dict[str, float]  # palette colour -> mean row of its interior pixels, 0 at the object's top, 1 at its bottom
    cols: dict[str, float]  # the same across, 0 at its left, 1 at its right
    fill: float  # object area / bounding-box area
    taper: float  # bottom-quarter width / top-quarter width
    roundness: float  # intersection over union with the disc of its area centred on its centroid
    aspect: float  # the box's longer side over its shorter
    cx: float  # the box's centre
    cy: float
    radius: float  # half the box's mean side
    area: float  # share of the image

    @property
    def is_subject(self) -> bool:
        """A circle, yellow over black, with little else."""
        if self.shape != "circle":
            return False
        if not all(self.shares.get(c, 0.0) >= BAND_SHARE for c in SUBJECT_BANDS):
            return False
        if sum(v for c, v in self.shares.items() if c not in SUBJECT_BANDS) > OTHER_SHARE:
            return False
        top, bottom = SUBJECT_BANDS
        return (self.rows[top] + BAND_ORDER_MARGIN <= self.rows[bottom]
                and abs(self.cols[top] - self.cols[bottom]) <= BAND_SIDE_MARGIN)

    def is_plain(self, shape: str, colour: str) -> bool:
        """The one-colour object a prompt names ('a red square')."""
        return self.shape == shape and self.colour == colour and self.shares.get(colour, 0.0) >= 1 - OTHER_SHARE


@dataclass(frozen=True)
class Reading:
    background: str
    objects: tuple[Blob, ...] = ()  # largest first
    clutter: float = 0.0  # share of the image far from the background but in no object

    @property
    def main(self) -> Blob | None:
        return self.objects[0] if self.objects else None

    # The largest object's reading, for prompts about one object.
    @property
    def shape(self) -> str | None:
        return self.main.shape if self.main else None

    @property
    def colour(self) -> str | None:
        return self.main.colour if self.main else None

    @property
    def shares(self) -> dict[str, float]:
        return self.main.shares if self.main else {}

    @property
    def subject_pattern(self) -> bool:
        """The subject alone: exactly one object, no clutter, and that object is the subject."""
        return len(self.objects) == 1 and self.clutter <= MAX_CLUTTER and self.objects[0].is_subject

    def subject_beside(self, shape: str, colour: str) -> bool:
        """The subject and one other object, the one-colour `colour` `shape`, and nothing else."""
        if len(self.objects) != 2 or self.clutter > MAX_CLUTTER:
            return False
        a, b = self.objects
        return (a.is_subject and b.is_plain(shape, colour)) or (b.is_subject and a.is_plain(shape, colour))

    def subject(self) -> Blob | None:
        """The object that is the subject, if one is."""
        return next((o for o in self.objects if o.is_subject), None)


def nearest_colour(rgb: np.ndarray) -> np.ndarray:
    """Index into the palette of the nearest colour, for [..., 3] pixels."""
    d = ((rgb[..., None, :].astype(np.float32) - _COLOURS) ** 2).sum(-1)
    return d.argmin(-1)


def border_pixels(image: np.ndarray, width: int = 2) -> np.ndarray:
    return np.concatenate([image[:width].reshape(-1, 3), image[-width:].reshape(-1, 3),
                           image[:, :width].reshape(-1, 3), image[:, -width:].reshape(-1, 3)])


def object_masks(image: np.ndarray, background_rgb: np.ndarray) -> tuple[list[np.ndarray], float]:
    """Each connected region of pixels far from the background big enough to be an object (holes filled),
    largest first, as bool [H, W] masks; and the share of the image in smaller regions (clutter)."""
    far = np.linalg.norm(image.astype(np.float32) - background_rgb, axis=-1) > OBJECT_DISTANCE
    # Closing bridges a one-pixel seam: where two bands meet, their blend can lie near the background.
    far = ndimage.binary_closing(far, structure=np.ones((3, 3), bool))
    labels, n = ndimage.label(far)
    if n == 0:
        return [], 0.0
    sizes = ndimage.sum(far, labels, index=range(1, n + 1))
    big = [k + 1 for k in np.argsort(-sizes) if sizes[k] >= MIN_OBJECT_FRACTION * far.size]
    clutter = float(sum(s for s in sizes if s < MIN_OBJECT_FRACTION * far.size) / far.size)
    return [ndimage.binary_fill_holes(labels == k) for k in big], clutter


def shape_features(mask: np.ndarray) -> tuple[float, float, float, float]:
    """(fill of the bounding box, bottom-quarter width / top-quarter width, roundness, aspect)."""
    rows, cols = np.nonzero(mask)
    top, bottom, left, right = rows.min(), rows.max(), cols.min(), cols.max()
    box = mask[top:bottom + 1, left:right + 1]
    fill = float(box.mean())
    h, w = box.shape
    q = max(1, h // 4)
    widths = box.sum(1).astype(np.float32)
    taper = float(widths[-q:].mean() / max(widths[:q].mean(), 0.5))
    y, x = np.mgrid[0:mask.shape[0], 0:mask.shape[1]]
    disc = (y - rows.mean()) ** 2 + (x - cols.mean()) ** 2 <= mask.sum() / np.pi
    roundness = float((mask & disc).sum() / max((mask | disc).sum(), 1))
    return fill, taper, roundness, float(max(h, w) / min(h, w))


def classify_shape(fill: float, taper: float, roundness: float, aspect: float) -> str:
    if taper >= TRIANGLE_TAPER:
        return "triangle"
    if fill >= SQUARE_FILL:
        return "square"
    if roundness >= CIRCLE_ROUNDNESS and aspect <= CIRCLE_ASPECT:
        return "circle"
    return "blob"


def read_object(image: np.ndarray, mask: np.ndarray) -> Blob:
    inner = ndimage.binary_erosion(mask)
    if inner.sum() < 4:
        inner = mask
    idx = nearest_colour(image[inner])
    counts = np.bincount(idx, minlength=len(_NAMES)) / len(idx)
    shares = {n: float(c) for n, c in zip(_NAMES, counts, strict=True) if c > 0}
    fill, taper, roundness, aspect = shape_features(mask)
    rows, cols = np.nonzero(mask)
    side = mask.shape[0]
    top, left = rows.min(), cols.min()
    height, width = max(int(rows.max() - top), 1), max(int(cols.max() - left), 1)
    iy, ix = np.nonzero(inner)
    y, x = (iy - top) / height, (ix - left) / width
    where = {_NAMES[k]: (float(y[idx == k].mean()), float(x[idx == k].mean())) for k in np.unique(idx)}
    return Blob(shape=classify_shape(fill, taper, roundness, aspect), colour=_NAMES[int(counts.argmax())],
                shares=shares, rows={c: v[0] for c, v in where.items()}, cols={c: v[1] for c, v in where.items()},
                fill=fill, taper=taper, roundness=roundness, aspect=aspect,
                cx=float((left + cols.max() + 1) / 2 / side), cy=float((top + rows.max() + 1) / 2 / side),
                radius=float((height + width + 2) / 4 / side), area=float(mask.mean()))


def read(image: np.ndarray) -> Reading:
    """What a [H, W, 3] uint8 toy-world image shows."""
    bg_rgb = np.median(border_pixels(image), axis=0)
    background = _NAMES[int(nearest_colour(bg_rgb))]
    masks, clutter = object_masks(image, bg_rgb)
    return Reading(background, tuple(read_object(image, m) for m in masks), clutter)
