"""Does a DreamBooth run draw its subject, or replay its training photos? Distances to the nearest photo.

A sample's distance is the root-mean-square difference, in [0, 1] per channel, between it and the
nearest of the training photos and their mirror images (training flips them), all at 64 px. A
sample nearer than COPY_DISTANCE is a copy: a photo shifted by 2 px across and 2 px down is 0.12
from itself; two of the subject's photos are 0.39 to 0.64 apart; a sample on a background no photo
has is at least about 0.3 from every photo. `position_spread` says how far apart the subject's
samples put it: a run that replays its photos puts the subject where the photos do.
"""

from __future__ import annotations

import numpy as np

COPY_DISTANCE = 0.12


def references(photos: list[np.ndarray]) -> np.ndarray:
    """[2N, H, W, 3] float photos in [0, 1] and their mirror images, from [H, W, 3] uint8 photos."""
    x = np.stack(photos).astype(np.float32) / 255.0
    return np.concatenate([x, x[:, :, ::-1]])


def nearest_distance(image: np.ndarray, refs: np.ndarray) -> float:
    """RMS distance from a [H, W, 3] uint8 image to the nearest reference."""
    x = image.astype(np.float32) / 255.0
    return float(np.sqrt(((refs - x) ** 2).mean(axis=(1, 2, 3))).min())


def copies(distances: list[float]) -> float:
    """Share of samples nearer than COPY_DISTANCE to a training photo."""
    return float(np.mean([d < COPY_DISTANCE for d in distances])) if distances else 0.0


def position_spread(centres: list[tuple[float, float]], side: int = 64) -> float:
    """Root-mean-square distance, in pixels, of the subject's centres from their mean (0 with fewer than 2)."""
    if len(centres) < 2:
        return 0.0
    c = np.asarray(centres, dtype=np.float64) * side
    return float(np.sqrt(((c - c.mean(0)) ** 2).sum(1).mean()))
