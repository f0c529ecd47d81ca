"""Optimizer state as safetensors (moment tensors) + JSON (layout, param groups): no pickles."""

from __future__ import annotations

import torch


def optimizer_to_files(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split ``optimizer.state_dict()`` into tensors (safetensors) and a JSON-able rest."""
    sd = optimizer.state_dict()
    tensors, layout = {}, {}
    for idx, state in sd["state"].items():
        layout[str(idx)] = {}
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = value
                layout[str(idx)][key] = "tensor"
            else:
                layout[str(idx)][key] = value
    return tensors, {"state": layout, "param_groups": sd["param_groups"]}


def optimizer_from_files(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state = {}
    for idx, entries in meta["state"].items():
        state[int(idx)] = {k: tensors[f"{idx}.{k}"] if v == "tensor" else v for k, v in entries.items()}
    return {"state": state, "param_groups": meta["param_groups"]}
