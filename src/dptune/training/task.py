"""``TrainingTask``: what the shared :class:`~dptune.training.loop.Trainer` trains.

The trainer owns the loop (accelerate, gradient accumulation, clipping, resume-exact data order and seeds,
checkpoints, NaN stop, progress bar, TensorBoard); a task says what is optimised and what is exported. DPT's
two stages are one task builder (:func:`dptune.training.setup.build_dpt_task`); soft-token and class-token
methods build their own tasks from :mod:`dptune.methods` and reuse the same trainer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn


@dataclass
class TrainingTask:
    """The trainable objective, its parameters and its exports.

    ``objective(inputs) -> (total loss, {term: value})``; ``prepare(batch, generator) -> inputs`` draws the
    batch's noise and timesteps from ``generator`` (so a resumed run sees the same randomness);
    ``export(directory)`` writes the user-facing artefacts (safetensors + JSON); ``validate(val_batches) ->
    metrics`` with a ``select`` entry (higher = better checkpoint) or None.
    """

    objective: nn.Module
    param_groups: list[dict]
    prepare: Callable[[dict, torch.Generator], Any]
    export: Callable[[Path], None]
    datasets: tuple[Any, Any]  # (train, validation); validation may be None
    validate: Callable[[list], dict] | None = None
    upstream_seconds: float = 0.0  # training time of the weights this run starts from (DPT stage 2: stage 1)

    def __post_init__(self) -> None:
        if not any(p.requires_grad for g in self.param_groups for p in g["params"]):
            raise ValueError("nothing to train: the task's parameter groups hold no trainable parameter")
