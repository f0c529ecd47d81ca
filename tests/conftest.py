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


@pytest.fixture
def tiny_sd(tiny_parts):
    """A diffusers StableDiffusionPipeline over the tiny random components."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        **tiny_parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture
def tiny_probe(tiny_sd):
    """DPTProbe (mid block) on the tiny pipeline's U-Net with a random adapter."""
    from dptune.adapter import DPTProbe
    from dptune.backbone import SDBackbone
    from helpers import make_tiny_adapter

    return DPTProbe(SDBackbone.from_pipeline(tiny_sd), make_tiny_adapter())


@pytest.fixture
def guided(tiny_sd):
    """A GuidedPipeline sharing the tiny pipeline's modules."""
    from dptune.sampling import GuidedPipeline

    return GuidedPipeline(tiny_sd)
