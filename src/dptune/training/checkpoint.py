"""Checkpoints: atomic directories of safetensors + JSON (no pickles), exactly resumable.

Layout of ``<out>/checkpoints/step-000500/``::

    trainable.safetensors     every trainable parameter (adapter, LoRA) by name -- what resume loads
    optimizer.safetensors     AdamW moment tensors;  optimizer.json: their layout + param groups
    state.json                step, scheduler state, best validation score, wall time
    config.json               the resolved TrainConfig
    adapter/                  the adapter for users (dptune.adapter.load_adapter)
    lora/                     stage 2: pytorch_lora_weights.safetensors for pipe.load_lora_weights

A checkpoint directory is written under a temporary name and renamed into place, so a killed run never leaves
a half-written checkpoint; ``<out>/latest.json`` names the newest complete one.

Randomness needs no saved state: noise, timesteps, dropout and data order are derived from (seed, step).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dptune.utils.io import ArtefactError, load_json, load_tensors, save_json, save_tensors
from dptune.utils.optim_state import optimizer_from_files, optimizer_to_files


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}


def write_checkpoint(out_dir: Path, name: str, model: nn.Module, optimizer, scheduler, state: dict,
                     config: dict, exports) -> Path:
    """Write checkpoint ``name`` atomically; ``exports(tmp_dir)`` adds the user-facing adapter/LoRA."""
    final = out_dir / "checkpoints" / name
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=final.parent))
    try:
        save_tensors(tmp / "trainable.safetensors", trainable_state(model))
        opt_tensors, opt_meta = optimizer_to_files(optimizer)
        save_tensors(tmp / "optimizer.safetensors", opt_tensors)
        save_json(tmp / "optimizer.json", opt_meta)
        save_json(tmp / "state.json", {**state, "scheduler": scheduler.state_dict()})
        save_json(tmp / "config.json", config)
        exports(tmp)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    save_json(out_dir / "latest.json", {"checkpoint": str(final.relative_to(out_dir)), "step": state["step"]})
    return final


def latest_checkpoint(out_dir: Path) -> Path | None:
    marker = out_dir / "latest.json"
    if not marker.is_file():
        return None
    path = out_dir / load_json(marker)["checkpoint"]
    if not (path / "state.json").is_file():
        raise ArtefactError(f"{marker} names {path}, which is missing or incomplete; delete {marker} to start over")
    return path


def check_resume_config(saved: dict, current: dict) -> None:
    """Refuse to resume into a run whose model/data/architecture differ (results would be meaningless)."""
    keys = ("stage", "model", "data", "blocks", "fuse", "adapter_d_model", "adapter_ffn", "adapter_heads",
            "adapter_queries", "lora_rank", "lora_targets", "lora_text_encoder", "train_adapter", "seed",
            "batch_size", "grad_accum")
    # a key the checkpoint lacks was added to TrainConfig later: that run used the field's default
    from dataclasses import fields

    from dptune.training.config import TrainConfig

    defaults = {f.name: f.default for f in fields(TrainConfig)}
    saved = {k: saved.get(k, defaults.get(k)) for k in keys}
    current = {k: current.get(k, defaults.get(k)) for k in keys}  # a non-DPT config lacks the DPT keys
    diff = {k: (saved[k], current.get(k)) for k in keys if saved[k] != current.get(k)}
    if diff:
        detail = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in diff.items())
        raise ArtefactError(f"cannot resume: the checkpoint was made with different settings ({detail}); "
                            "use the same config, or a new --out directory")


def load_checkpoint(path: Path, model: nn.Module, optimizer, scheduler) -> dict[str, Any]:
    """Restore trainable weights, optimizer and scheduler in place; return the saved state."""
    weights = load_tensors(path / "trainable.safetensors")
    params = dict(model.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and n not in weights]
    if missing:
        raise ArtefactError(f"checkpoint {path} lacks {len(missing)} trainable tensors (e.g. {missing[0]}); "
                            "it was made for a different model")
    with torch.no_grad():
        for name, value in weights.items():
            if name not in params or params[name].shape != value.shape:
                raise ArtefactError(f"checkpoint tensor {name} does not fit this model; use a matching config")
            params[name].copy_(value)
    optimizer.load_state_dict(optimizer_from_files(load_tensors(path / "optimizer.safetensors"),
                                                   load_json(path / "optimizer.json")))
    state = load_json(path / "state.json")
    scheduler.load_state_dict(state.pop("scheduler"))
    return state


def prune_checkpoints(out_dir: Path, keep: int) -> None:
    steps = sorted((out_dir / "checkpoints").glob("step-*"))
    for old in steps[:-keep] if keep > 0 else steps:
        shutil.rmtree(old, ignore_errors=True)
