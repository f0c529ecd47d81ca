"""Shared fixtures: tiny random Stable Diffusion components (diffusers-test style) that run on CPU in ms."""

from __future__ import annotations

import pytest
import torch

from dptune.backbone.tiny import real_size_unet, tiny_components

torch.set_num_threads(1)  # 2-core machines: tests share the CPU with other work


@pytest.fixture
def tiny_parts():
    return tiny_components()


@pytest.fixture
def tiny_backbone(tiny_parts):
    from dptune.backbone import SDBackbone

    return SDBackbone(**tiny_parts)


@pytest.fixture
def tiny_pipeline_dir(tmp_path, tiny_parts):
    """A tiny StableDiffusionPipeline saved as a diffusers folder."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        **tiny_parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    out = tmp_path / "tiny-sd"
    pipe.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def sd21_unet():
    return real_size_unet("sd-2-1-base")


@pytest.fixture(scope="session")
def sd15_unet():
    return real_size_unet("sd-v1-5")
