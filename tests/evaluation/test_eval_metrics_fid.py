"""FID and IS: hand-computed cases with tiny feature extractors, and the standard-Inception path with and
without torch-fidelity (both forced)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dptune.evaluation.metrics_common import MissingDependencyError, MissingWeightsError
from helpers import random_images


# ---- FID and IS ------------------------------------------------------------------------------------------
class _TwoPixels(nn.Module):
    """Feature = the red value of the first two pixels, minus 128 (uint8 (B, 3, H, W) -> (B, 2))."""

    num_features = 2

    def forward(self, x):
        return x[:, 0, 0, :2].double() - 128.0


def _pixels(points):
    imgs = np.full((len(points), 2, 2, 3), 128, dtype=np.uint8)
    for i, (a, b) in enumerate(points):
        imgs[i, 0, 0, 0], imgs[i, 0, 1, 0] = 128 + a, 128 + b
    return imgs


def test_fid_with_a_tiny_feature_extractor_equals_the_closed_form():
    from dptune.evaluation.metrics_fid import fid_score, frechet_distance

    # real features: (+-1, +-1) -> mean 0, unbiased covariance 4/3 I; fake: (3 +- 2, 4 +- 2) -> mean (3, 4),
    # covariance 16/3 I.  FID = |(3, 4)|^2 + 2 * (4/3 + 16/3 - 2 * sqrt(64/9)) = 25 + 8/3.
    real = _pixels([(-1, -1), (-1, 1), (1, -1), (1, 1)])
    fake = _pixels([(1, 2), (1, 6), (5, 2), (5, 6)])
    expected = 25.0 + 8.0 / 3.0
    assert fid_score(real, fake, feature=_TwoPixels(), batch_size=3) == pytest.approx(expected, rel=1e-5)
    s1, s2 = np.eye(2) * 4 / 3, np.eye(2) * 16 / 3
    assert frechet_distance(np.zeros(2), s1, np.array([3.0, 4.0]), s2) == pytest.approx(expected)
    assert fid_score(real, real, feature=_TwoPixels()) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match=">= 2 images"):
        fid_score(real[:1], fake, feature=_TwoPixels())


class _PixelClassifier(nn.Module):
    """Logits over 8 classes: class = first pixel's red value (sharp) or uniform."""

    def __init__(self, sharp: bool):
        super().__init__()
        self.sharp = sharp

    def forward(self, x):
        logits = torch.zeros(x.shape[0], 8)
        if self.sharp:
            logits[torch.arange(x.shape[0]), x[:, 0, 0, 0].long() % 8] = 50.0
        return logits


def test_inception_score_on_known_classifiers():
    from dptune.evaluation.metrics_fid import inception_score

    imgs = np.zeros((8, 2, 2, 3), dtype=np.uint8)
    imgs[:, 0, 0, 0] = np.arange(8)  # 8 images, 8 distinct classes
    mean, _ = inception_score(imgs, _PixelClassifier(sharp=True), splits=1)
    assert mean == pytest.approx(8.0, rel=1e-4)  # confident and diverse: IS = number of classes
    mean, _ = inception_score(imgs, _PixelClassifier(sharp=False), splits=1)
    assert mean == pytest.approx(1.0, abs=1e-6)  # uniform predictions: IS = 1
    with pytest.raises(ValueError, match="splits"):
        inception_score(imgs[:3], _PixelClassifier(sharp=True), splits=10)


def test_standard_inception_reports_a_missing_file(tmp_path, monkeypatch):
    from dptune.evaluation.metrics_fid import INCEPTION_FILE, fid_score, inception_score

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    imgs = random_images(4, size=8)
    with pytest.raises(MissingWeightsError, match=INCEPTION_FILE) as err:
        fid_score(imgs, imgs)
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in str(err.value)
    with pytest.raises(MissingWeightsError, match="--inception-weights"):
        inception_score(imgs, splits=2)


class _Requested(Exception):
    """Raised by the planted torchmetrics classes: what the standard-Inception path asked them for."""


@pytest.mark.parametrize("fidelity", [False, True], ids=["without-torch-fidelity", "with-torch-fidelity"])
def test_standard_inception_with_and_without_torch_fidelity(tmp_path, monkeypatch, fidelity):
    """Both branches, whichever one this environment has: without torch-fidelity a clear dependency error;
    with it, torchmetrics' standard Inception is built from the given weights (FID) / the hub copy (IS)."""
    import torchmetrics.image.fid
    import torchmetrics.image.inception
    import torchmetrics.utilities.imports

    from dptune.evaluation.metrics_fid import INCEPTION_FILE, fid_score, inception_score

    def planted(**kwargs):
        raise _Requested(kwargs)

    monkeypatch.setattr(torchmetrics.utilities.imports, "_TORCH_FIDELITY_AVAILABLE", fidelity)
    monkeypatch.setattr(torchmetrics.image.fid, "FrechetInceptionDistance", planted)
    monkeypatch.setattr(torchmetrics.image.inception, "InceptionScore", planted)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hub = tmp_path / "torch" / "hub" / "checkpoints" / INCEPTION_FILE
    hub.parent.mkdir(parents=True)
    hub.write_bytes(b"not really weights")
    weights = tmp_path / INCEPTION_FILE
    weights.write_bytes(b"not really weights")
    imgs = random_images(4, size=8)
    if not fidelity:
        with pytest.raises(MissingDependencyError, match="torch-fidelity"):
            fid_score(imgs, imgs, inception_weights=weights)
        with pytest.raises(MissingDependencyError, match="torch-fidelity"):
            inception_score(imgs, splits=2)
        return
    with pytest.raises(_Requested) as fid:
        fid_score(imgs, imgs, inception_weights=weights)
    assert fid.value.args[0] == {"feature": 2048, "feature_extractor_weights_path": str(weights), "antialias": False}
    with pytest.raises(_Requested) as is_:
        inception_score(imgs, splits=2)
    assert is_.value.args[0] == {"splits": 2}  # no custom classifier: torchmetrics' Inception
