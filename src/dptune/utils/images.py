"""Showing small images: enlarge by pixel repetition (nearest neighbour), never by smoothing."""

from __future__ import annotations

import numpy as np

MIN_SIDE = 128  # the shipped model's 32 x 32 images are shown at least this large


def enlarge(image: np.ndarray, min_side: int = MIN_SIDE) -> np.ndarray:
    """(H, W, C) -> the same pixels repeated an integer number of times so the short side is >= ``min_side``."""
    factor = max(1, -(-min_side // min(image.shape[:2])))  # ceil
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)
