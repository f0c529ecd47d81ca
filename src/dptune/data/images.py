"""Image and box helpers shared by the COCO/RefCOCO loaders, the latent cache and the mining embedders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dptune.data.formats import DataFormatError


def open_rgb(path: str | Path, what: str = "image") -> Image.Image:
    """Open an image file as RGB (COCO holds some greyscale and CMYK JPEGs)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{what} {path} does not exist; check --image-dir points at the folder holding the COCO images "
            f"(e.g. .../train2014)"
        )
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except OSError as e:
        raise DataFormatError(f"{what} {path} is not a readable image ({e}); re-download this file") from e


def square_resize(image: Image.Image, size: int) -> Image.Image:
    """Resize to ``size`` x ``size`` without keeping the aspect ratio, as the paper does (Appendix B.3)."""
    if image.size == (size, size):
        return image
    return image.resize((size, size), Image.Resampling.BICUBIC)


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """uint8 RGB -> float (3, H, W) in [-1, 1], the range the SD VAE expects."""
    arr = np.asarray(image, dtype=np.float32)  # (H, W, 3) in [0, 255]
    return torch.from_numpy(arr).permute(2, 0, 1).div(127.5).sub(1.0).contiguous()  # (3, H, W)


def load_image_tensor(path: str | Path, size: int, what: str = "image") -> torch.Tensor:
    """Read, square-resize and scale an image: (3, size, size) in [-1, 1]."""
    return pil_to_tensor(square_resize(open_rgb(path, what), size))


def xywh_to_cxcywh_norm(bbox: tuple[float, float, float, float] | list[float], width: int, height: int) -> torch.Tensor:
    """COCO pixel box (x, y, w, h) -> normalised (cx, cy, w, h) in [0, 1], shape (4,).

    The square resize scales x and y independently, so the normalised box of the resized image equals the
    normalised box of the original: no further conversion is needed after resizing.
    """
    x, y, w, h = (float(v) for v in bbox)
    box = torch.tensor([(x + w / 2) / width, (y + h / 2) / height, w / width, h / height])  # (4,)
    return box.clamp_(0.0, 1.0)
