"""Real-size SD 1.5 / 2.1-base U-Nets (random weights, built from the shipped configs): tap shapes and
truncated-vs-full agreement on the true architectures."""

from __future__ import annotations

import pytest
import torch

from dptune.backbone import block_names, feature_taps, run_tapped
from dptune.backbone.tiny import real_size_config

pytestmark = pytest.mark.slow

# Documented in dptune/backbone/taps.py: (channels, size) at a 64x64 latent (512x512 image).
EXPECTED_512 = {
    "down0": (320, 32),
    "down1": (640, 16),
    "down2": (1280, 8),
    "down3": (1280, 8),
    "mid": (1280, 8),
    "up0": (1280, 8),
    "up1": (1280, 16),
    "up2": (640, 32),
    "up3": (320, 64),
}


def _cross_dim(version):
    return real_size_config(version)["cross_attention_dim"]


@pytest.mark.parametrize("version,fixture", [("sd-2-1-base", "sd21_unet"), ("sd-v1-5", "sd15_unet")])
def test_block_shapes_at_512(version, fixture, request):
    unet = request.getfixturevalue(fixture)
    assert block_names(unet) == list(EXPECTED_512)
    z = torch.randn(1, 4, 64, 64)
    text = torch.randn(1, 77, _cross_dim(version))
    with torch.no_grad(), feature_taps(unet, block_names(unet), truncate=False) as taps:
        run_tapped(unet, taps, z, torch.tensor([500]), encoder_hidden_states=text)
    got = {k: (v.shape[1], v.shape[-1]) for k, v in taps.features.items()}
    assert got == EXPECTED_512


def test_truncated_matches_full_sd21(sd21_unet):
    z = torch.randn(1, 4, 32, 32)  # 256x256 image
    text = torch.randn(1, 77, 1024)
    t = torch.tensor([250])
    with torch.no_grad():
        with feature_taps(sd21_unet, ["mid", "up1"], truncate=False) as full:
            run_tapped(sd21_unet, full, z, t, encoder_hidden_states=text)
        for block in ("mid", "up1"):
            with feature_taps(sd21_unet, [block]) as trunc:
                assert run_tapped(sd21_unet, trunc, z, t, encoder_hidden_states=text) is None
            assert torch.equal(trunc.features[block], full.features[block])
