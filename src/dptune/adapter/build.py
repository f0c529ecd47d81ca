"""The one place a :class:`DPTProbe` is built: training, generation and evaluation all come through here.

A saved adapter folder sits in a run's checkpoint next to the run's ``config.json``; the probed blocks and
their fusion are read from it unless given, so the adapter always reads the features it was trained on.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from dptune.adapter.config import AdapterConfig
from dptune.adapter.io import load_adapter
from dptune.adapter.model import DiscriminativeAdapter
from dptune.adapter.probe import DPTProbe

RANDOM_ADAPTER = "random"  # smoke runs only: an untrained adapter


def probe_settings(adapter_dir: str | os.PathLike | None, blocks=None, fuse: str | None = None
                   ) -> tuple[list[str], str, str | None]:
    """(blocks, fuse, model the adapter was trained on): given values win, else the run's config.json,
    else the paper's mid block with sum fusion."""
    trained_on = None
    cfg_path = Path(adapter_dir).parent / "config.json" if adapter_dir and adapter_dir != RANDOM_ADAPTER else None
    if cfg_path is not None and cfg_path.is_file():
        from dptune.utils.io import load_json

        cfg = load_json(cfg_path)
        blocks, fuse, trained_on = blocks or cfg.get("blocks"), fuse or cfg.get("fuse"), cfg.get("model")
    if isinstance(blocks, str):
        blocks = [b for b in blocks.replace("+", ",").split(",") if b]
    return list(blocks or ["mid"]), fuse or "sum", trained_on


def new_adapter(backbone, blocks, fuse: str = "sum", **config) -> DiscriminativeAdapter:
    """A freshly initialised adapter sized for ``blocks`` of ``backbone`` (``config``: AdapterConfig fields)."""
    channels = DPTProbe.feature_channels(backbone, list(blocks), fuse)
    return DiscriminativeAdapter(AdapterConfig(in_channels=channels, text_dim=backbone.text_dim, **config))


def load_probe(backbone, adapter_dir: str | os.PathLike, blocks=None, fuse: str | None = None,
               trainable: bool = False) -> DPTProbe:
    """U-Net of ``backbone`` + the adapter saved in ``adapter_dir`` (``'random'``: an untrained one, seed 0),
    checked against the probed block's width. Frozen and in eval mode unless ``trainable``."""
    blocks, fuse, _ = probe_settings(adapter_dir, blocks, fuse)
    if str(adapter_dir) == RANDOM_ADAPTER:
        torch.manual_seed(0)
        adapter = new_adapter(backbone, blocks, fuse, d_model=64, heads=4, ffn=128, num_queries=30,
                              num_match_queries=5)
    else:
        from dptune.backbone.lora_loading import existing_dir

        path = existing_dir(adapter_dir, "adapter", "pass the adapter/ folder of a `dptune probe` or `dptune tune` "
                            "checkpoint (it holds adapter_config.json and adapter.safetensors)")
        adapter = load_adapter(path, expect_in_channels=DPTProbe.feature_channels(backbone, blocks, fuse),
                               expect_text_dim=backbone.text_dim)
    probe = DPTProbe(backbone, adapter.to(backbone.device), blocks, fuse)
    if not trainable:
        probe.requires_grad_(False).eval()
    return probe
