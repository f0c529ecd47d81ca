"""Differentiable resizing shared by DCT's classifiers."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def resize(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, 3, H, W) -> (B, 3, *size), bilinear with antialiasing when shrinking (differentiable)."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    shrink = images.shape[-2] > size[0] or images.shape[-1] > size[1]
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=shrink)
