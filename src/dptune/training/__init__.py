"""Training: stage 1 (discriminative probing) and stage 2 (discriminative tuning with LoRA).

``TrainConfig`` is light to import; the loop (torch, accelerate, diffusers) loads on first use.
"""

from typing import Any

from dptune.training.config import TrainConfig

__all__ = ["TrainConfig", "TrainResult", "TrainingDiverged", "train"]


def __getattr__(name: str) -> Any:
    if name in ("TrainResult", "TrainingDiverged", "train"):
        from dptune.training import loop

        return getattr(loop, name)
    raise AttributeError(f"module 'dptune.training' has no attribute {name!r}")
