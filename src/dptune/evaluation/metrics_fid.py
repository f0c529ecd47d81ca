"""Image-quality metrics of paper Table 1: FID (Heusel et al. 2017), Inception Score (Salimans et al. 2016).

Both go through torchmetrics. Two ways to provide the network:

* the standard FID Inception (torch-fidelity's port of the TF 2015-12-05 graph): needs ``torch-fidelity``
  (which needs torchvision) and the weights file ``weights-inception-2015-12-05-6726825d.pth``, passed as
  ``inception_weights=PATH`` or placed in ``$TORCH_HOME/hub/checkpoints/`` (the only place torchmetrics'
  InceptionScore looks). Nothing is downloaded here: a missing file raises :class:`MissingWeightsError`.
* any ``torch.nn.Module``: a feature extractor for FID (uint8 (B, 3, H, W) -> (B, D)) or a classifier
  returning logits for IS -- e.g. your own Inception loaded from a local file, or a tiny module in tests.

FID = ||mu_r - mu_f||^2 + Tr(S_r + S_f - 2 (S_r S_f)^(1/2)) with unbiased (n - 1) covariances;
:func:`frechet_distance` is the same formula in numpy/scipy, used to cross-check.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dptune.evaluation.metrics_common import MissingDependencyError, MissingWeightsError

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE}"


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2)."""
    from scipy import linalg

    diff = np.asarray(mu1, dtype=np.float64) - np.asarray(mu2, dtype=np.float64)
    covmean = linalg.sqrtm(np.asarray(sigma1, dtype=np.float64) @ np.asarray(sigma2, dtype=np.float64))
    covmean = np.real(covmean)  # tiny imaginary parts are numerical noise
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def inception_weights_path(path: str | os.PathLike | None = None) -> Path:
    """The standard Inception weights: ``path`` or ``$TORCH_HOME/hub/checkpoints/<file>``; raise if absent."""
    cand = Path(path).expanduser() if path else hub_checkpoint_dir() / INCEPTION_FILE
    if not cand.is_file():
        raise MissingWeightsError(
            f"FID/IS Inception weights {cand} are missing; download {INCEPTION_URL} once and pass its path "
            f"(--inception-weights FILE) or copy it to {hub_checkpoint_dir() / INCEPTION_FILE}; or pass your "
            "own feature extractor / classifier module"
        )
    return cand


def _require_fidelity() -> None:
    from torchmetrics.utilities.imports import _TORCH_FIDELITY_AVAILABLE

    if not _TORCH_FIDELITY_AVAILABLE:
        raise MissingDependencyError(
            "the standard FID/IS Inception needs torch-fidelity (`pip install torch-fidelity`, which needs "
            "torchvision); or pass your own feature extractor / classifier module"
        )


def _as_uint8_nchw(images: np.ndarray) -> torch.Tensor:
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"expected uint8 images (N, H, W, 3), got {arr.dtype} {arr.shape}")
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()  # (N, 3, H, W)


def fid_score(
    real: np.ndarray,
    fake: np.ndarray,
    feature: nn.Module | None = None,
    inception_weights: str | os.PathLike | None = None,
    batch_size: int = 64,
) -> float:
    """FID of uint8 image sets (N, H, W, 3); ``feature`` = custom extractor, else the standard Inception."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    r, f = _as_uint8_nchw(real), _as_uint8_nchw(fake)
    if min(len(r), len(f)) < 2:
        raise ValueError(
            f"FID needs >= 2 images per set (covariances), got {len(r)} real and {len(f)} generated"
        )
    if feature is None:
        weights = inception_weights_path(inception_weights)
        _require_fidelity()
        metric = FrechetInceptionDistance(
            feature=2048, feature_extractor_weights_path=str(weights), antialias=False
        )  # classic FID resize
    else:
        metric = FrechetInceptionDistance(feature=feature, input_img_size=tuple(r.shape[1:]))
    with torch.no_grad():
        for imgs, is_real in ((r, True), (f, False)):
            for a in range(0, len(imgs), batch_size):
                metric.update(imgs[a : a + batch_size], real=is_real)
        return float(metric.compute())


def inception_score(
    images: np.ndarray,
    classifier: nn.Module | None = None,
    splits: int = 10,
    inception_weights: str | os.PathLike | None = None,
    batch_size: int = 64,
    seed: int = 0,
) -> tuple[float, float]:
    """(mean, std) of IS = exp(E_x KL(p(y|x) || p(y))) over ``splits`` chunks of uint8 images (N, H, W, 3).

    ``classifier`` maps uint8 (B, 3, H, W) to logits (B, C); default: the standard Inception (its weights
    must sit in ``$TORCH_HOME/hub/checkpoints``; ``inception_weights`` only checks a given path exists).
    """
    from torchmetrics.image.inception import InceptionScore

    x = _as_uint8_nchw(images)
    if len(x) < splits:
        raise ValueError(f"IS with {splits} splits needs >= {splits} images, got {len(x)}; lower splits")
    if classifier is None:
        weights = inception_weights_path(inception_weights)
        if weights != hub_checkpoint_dir() / INCEPTION_FILE:
            raise MissingWeightsError(
                f"torchmetrics' InceptionScore only reads {hub_checkpoint_dir() / INCEPTION_FILE}; "
                f"copy {weights} there"
            )
        _require_fidelity()
    with torch.no_grad(), warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(
            seed
        )  # torchmetrics shuffles before splitting; fork_rng keeps the global RNG intact
        # torchmetrics warns that IS buffers all features, and (1 split) that the std is undefined
        warnings.simplefilter("ignore", UserWarning)
        metric = (
            InceptionScore(splits=splits)
            if classifier is None
            else InceptionScore(feature=classifier, splits=splits)
        )
        for a in range(0, len(x), batch_size):
            metric.update(x[a : a + batch_size])
        mean, std = metric.compute()
    return float(mean), (float(std) if splits > 1 else 0.0)


def load_image_folder(
    folder: str | os.PathLike, size: int | None = None, limit: int | None = None
) -> np.ndarray:
    """Every PNG/JPEG in ``folder`` (sorted) as uint8 (N, H, W, 3), square-resized to ``size`` if given."""
    from PIL import Image

    paths = sorted(
        p for p in Path(folder).expanduser().iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")
    )
    if not paths:
        raise FileNotFoundError(f"no .png/.jpg images in {folder}; pass a folder of real images for FID")
    out = []
    for p in paths[:limit]:
        with Image.open(p) as im:
            im = im.convert("RGB")
            out.append(np.asarray(im.resize((size, size), Image.Resampling.BICUBIC) if size else im))
    return np.stack(out)
