"""Save / load a discriminative adapter: ``adapter.safetensors`` + ``adapter_config.json`` (atomic, no pickle).

Every parameter is saved, including the learnable temperature ``logit_scale`` (the official loader skips it,
silently resetting tau to 0.07).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from dptune.adapter.config import AdapterConfig
from dptune.adapter.model import DiscriminativeAdapter
from dptune.utils.config import from_dict, to_dict
from dptune.utils.io import ArtefactError, load_json, load_tensors, save_json, save_tensors

WEIGHTS_NAME = "adapter.safetensors"
CONFIG_NAME = "adapter_config.json"
FORMAT = "dptune-adapter"
FORMAT_VERSION = 1


class AdapterMismatchError(ArtefactError, ValueError):
    """A saved adapter was made for a different feature width or text dimension than requested."""


def save_adapter(adapter: DiscriminativeAdapter, directory: str | os.PathLike) -> Path:
    """Write ``adapter.safetensors`` and ``adapter_config.json`` into ``directory``; returns the directory.

    Weights go first, config last, so a directory with a config always has matching weights.
    """
    directory = Path(directory)
    meta = {"format": FORMAT, "format_version": str(FORMAT_VERSION)}
    save_tensors(directory / WEIGHTS_NAME, adapter.state_dict(), metadata=meta)
    save_json(
        directory / CONFIG_NAME,
        {"format": FORMAT, "format_version": FORMAT_VERSION, "config": to_dict(adapter.config)},
    )
    return directory


def load_adapter_config(directory: str | os.PathLike) -> AdapterConfig:
    """Read and validate ``adapter_config.json`` from ``directory``."""
    path = Path(directory) / CONFIG_NAME
    data = load_json(path)
    if not isinstance(data, dict) or data.get("format") != FORMAT or "config" not in data:
        raise ArtefactError(f"{path} is not a dptune adapter config; point to a directory written by save_adapter")
    if data.get("format_version") != FORMAT_VERSION:
        raise ArtefactError(
            f"{path} has adapter format version {data.get('format_version')}, this dptune reads "
            f"{FORMAT_VERSION}; re-save the adapter with a matching dptune version"
        )
    try:
        return from_dict(AdapterConfig, data["config"])
    except (TypeError, ValueError) as e:
        raise ArtefactError(f"{path} holds an invalid adapter config ({e})") from e


def _check_expected(cfg: AdapterConfig, where: Path, in_channels: int | None, text_dim: int | None) -> None:
    problems = []
    if in_channels is not None and cfg.in_channels != in_channels:
        problems.append(f"feature width in_channels={cfg.in_channels} but the probed block has {in_channels}")
    if text_dim is not None and cfg.text_dim != text_dim:
        problems.append(f"text_dim={cfg.text_dim} but the backbone's pooled text embedding has {text_dim}")
    if problems:
        raise AdapterMismatchError(
            f"adapter in {where} was made for " + "; ".join(problems) + ". Use an adapter trained on the same "
            "backbone and block (or probe the block it was trained on)."
        )


def load_adapter(
    directory: str | os.PathLike,
    expect_in_channels: int | None = None,
    expect_text_dim: int | None = None,
    device: str | torch.device = "cpu",
) -> DiscriminativeAdapter:
    """Rebuild an adapter from ``directory`` (config + weights, logit scale included).

    ``expect_in_channels`` / ``expect_text_dim``: the probed block's channels and the backbone's text
    dimension; a checkpoint made for other sizes raises :class:`AdapterMismatchError` saying both.
    """
    directory = Path(directory)
    cfg = load_adapter_config(directory)
    _check_expected(cfg, directory, expect_in_channels, expect_text_dim)
    adapter = DiscriminativeAdapter(cfg)
    state = load_tensors(directory / WEIGHTS_NAME)
    own = adapter.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        raise ArtefactError(
            f"{directory / WEIGHTS_NAME} does not fit its config (missing {missing[:5]}, unexpected "
            f"{unexpected[:5]}, wrong shape {wrong[:5]}); the directory is corrupt or mixed, re-save the adapter"
        )
    adapter.load_state_dict(state, strict=True)
    return adapter.to(device)
