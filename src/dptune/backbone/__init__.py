"""Backbone layer: load Stable Diffusion, encode text/images, add noise, tap U-Net features."""

from dptune.backbone.loading import ModelNotFoundError, load_pipeline, resolve_model, shipped_models
from dptune.backbone.pipelines import ddim_pipeline
from dptune.backbone.sd import SDBackbone, TextEmbeddings
from dptune.backbone.taps import (
    UnknownBlockError,
    block_names,
    check_blocks,
    feature_taps,
    fuse_features,
    run_tapped,
)


def load_backbone(name_or_path, device: str | None = None, dtype=None) -> SDBackbone:
    """Load an SD checkpoint (folder, hub id, a world's shipped alias such as 'shapesworld', or 'tiny-random')
    as an :class:`SDBackbone`."""
    return SDBackbone.from_pipeline(load_pipeline(name_or_path, dtype=dtype, device=device))


__all__ = [
    "ModelNotFoundError",
    "SDBackbone",
    "TextEmbeddings",
    "UnknownBlockError",
    "block_names",
    "check_blocks",
    "ddim_pipeline",
    "feature_taps",
    "fuse_features",
    "load_backbone",
    "load_pipeline",
    "resolve_model",
    "run_tapped",
    "shipped_models",
]
