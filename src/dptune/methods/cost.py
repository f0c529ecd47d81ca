"""What a method costs besides sampling time: the parameters it trained and the wall time that took.

Read from its weight files, not from the method's code, so every method is measured the same way: the tensors
in the ``*.safetensors`` files of the config fields that hold trained weights, and ``train_seconds`` from the
``state.json`` the shared trainer writes beside them (``<run>/final/state.json``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

# config fields that hold weights a method trained (a shipped classifier or referee is not counted: the method
# did not train it)
TRAINED_FIELDS = ("lora", "adapter", "tokens", "token")


def _tensor_elements(path: Path) -> int:
    """Number of scalars in a safetensors file, read from its header (no tensor is loaded)."""
    from safetensors import safe_open

    total = 0
    with safe_open(str(path), framework="pt") as f:
        for key in f.keys():
            n = 1
            for d in f.get_slice(key).get_shape():
                n *= d
            total += n
    return total


def _state_file(path: Path) -> Path | None:
    folder = path if path.is_dir() else path.parent
    for candidate in (folder, folder.parent):  # <run>/final/lora -> <run>/final/state.json
        if (candidate / "state.json").is_file():
            return candidate / "state.json"
    return None


def method_cost(method, config: Any) -> dict[str, Any]:
    """{"trainable_params": int or None, "train_seconds": float or None} of a configured method."""
    from dptune.utils.io import load_json

    fields = {f.name for f in dataclasses.fields(config)} & (set(TRAINED_FIELDS) | set(method.weights))
    params, seconds, states, unknown = 0, 0.0, set(), False
    for name in sorted(fields):
        value = getattr(config, name)
        path = Path(value).expanduser() if isinstance(value, str) else None
        if path is None or not path.exists():
            continue
        files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path]  # the weights, not checkpoints
        params += sum(_tensor_elements(f) for f in files if f.suffix == ".safetensors")
        state = _state_file(path)
        if state is not None and state not in states:
            states.add(state)
            recorded = load_json(state).get("train_seconds")
            unknown = unknown or recorded is None  # written before dptune recorded training time
            seconds += float(recorded or 0.0)
    return {"trainable_params": params or (0 if not fields else None),
            "train_seconds": round(seconds, 1) if states and not unknown else None}
