"""Shared pieces of the model-based metrics: missing-weights errors and torchvision-free preprocessing.

Every metric model is loaded from a LOCAL path; nothing downloads. When something is missing the error says
exactly which file is missing and how to provide it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

# OpenAI CLIP normalisation (also used by BLIP / BLIP-2 image processors).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
WEIGHT_FILES = (
    "model.safetensors",
    "pytorch_model.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)


class MissingWeightsError(FileNotFoundError):
    """A metric's model weights (or its config) are not at the given local path."""


class MissingDependencyError(ImportError):
    """A metric needs an optional package that is not installed."""


def require_hf_folder(path: str | os.PathLike | None, what: str, example: str) -> Path:
    """Check ``path`` is a local transformers folder (config.json + weights); raise naming what is missing."""
    how = (
        f"download it once on a machine with network, e.g. `huggingface-cli download {example} "
        f"--local-dir DIR`, and pass DIR"
    )
    if path is None:
        raise MissingWeightsError(f"{what}: no model folder given; {how}")
    p = Path(path).expanduser()
    if not p.is_dir():
        raise MissingWeightsError(f"{what}: model folder {p} does not exist; {how}")
    if not (p / "config.json").is_file():
        raise MissingWeightsError(f"{what}: {p / 'config.json'} is missing; {how}")
    if not any((p / w).is_file() for w in WEIGHT_FILES):
        raise MissingWeightsError(
            f"{what}: no weights in {p} (expected one of {', '.join(WEIGHT_FILES)}); {how}"
        )
    return p


def image_settings(folder: Path, default_size: int) -> tuple[int, tuple, tuple, bool]:
    """(size, mean, std, center_crop) from ``preprocessor_config.json`` if present, else CLIP defaults."""
    import json

    cfg_path = folder / "preprocessor_config.json"
    if not cfg_path.is_file():
        return default_size, CLIP_MEAN, CLIP_STD, True
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    crop = cfg.get("crop_size") or cfg.get("size") or default_size
    size = (
        crop.get("height", crop.get("shortest_edge", default_size)) if isinstance(crop, dict) else int(crop)
    )
    return (
        int(size),
        tuple(cfg.get("image_mean", CLIP_MEAN)),
        tuple(cfg.get("image_std", CLIP_STD)),
        bool(cfg.get("do_center_crop", False)),
    )


def preprocess(
    images: np.ndarray, size: int, mean: Sequence[float], std: Sequence[float], center_crop: bool = True
) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> normalised float (B, 3, size, size), bicubic resize with PIL (no torchvision).

    ``center_crop``: resize the short side to ``size`` then crop the centre (CLIP); else resize the whole
    image to size x size (BLIP).
    """
    from PIL import Image

    out = []
    for img in np.asarray(images, dtype=np.uint8):
        im = Image.fromarray(img)
        if center_crop:
            w, h = im.size
            scale = size / min(w, h)
            im = im.resize(
                (max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BICUBIC
            )
            left, top = (im.size[0] - size) // 2, (im.size[1] - size) // 2
            im = im.crop((left, top, left + size, top + size))
        else:
            im = im.resize((size, size), Image.Resampling.BICUBIC)
        out.append(np.asarray(im, dtype=np.float32) / 255.0)
    x = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)  # (B, 3, size, size) in [0, 1]
    m = torch.tensor(mean, dtype=torch.float32)[None, :, None, None]
    s = torch.tensor(std, dtype=torch.float32)[None, :, None, None]
    return (x - m) / s
