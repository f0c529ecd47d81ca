"""The guidance contract: anything with ``score(x, t, cond) -> (B,)`` can steer sampling.

The self-correcting denoiser (:mod:`dptune.sampling.denoiser`) climbs the gradient of an objective's score
w.r.t. the latent (paper Eq. 9 when the objective is DPT's matching score). The sampler knows nothing about
what is scored: DPT's matching score and its grounded REC hinge live in :mod:`dptune.methods.dpt`; a
classifier's log-probability or a CLIP similarity plug in the same way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn


@dataclass
class GuidanceCond:
    """What an objective may read about the batch it scores."""

    prompts: list[str]  # (B,) the prompts being generated
    hidden: torch.Tensor  # (B, L, D) the U-Net's text context of the conditional branch
    extra: dict[str, Any] = field(default_factory=dict)  # per-batch state an objective's ``prepare`` computed


@runtime_checkable
class GuidanceObjective(Protocol):
    """An objective the sampler climbs.

    ``score(x, t, cond)``: ``x`` (B, C, h, w) is the U-Net input at timestep ``t`` (the scheduler's latent
    after ``scale_model_input``); returns (B,) fp32, differentiable w.r.t. ``x``, larger = better.
    ``prepare(cond)``: optional per-batch set-up (encode phrases, parse prompts); return the condition to
    score with, or None when no sample of the batch is to be corrected (sampling then runs unguided).
    """

    def score(self, x: torch.Tensor, t: torch.Tensor, cond: GuidanceCond) -> torch.Tensor: ...


def prepare(objective: GuidanceObjective, cond: GuidanceCond) -> GuidanceCond | None:
    """Run the objective's optional ``prepare`` hook."""
    hook = getattr(objective, "prepare", None)
    return cond if hook is None else hook(cond)


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Dropout off while scoring; restores the caller's train/eval state."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)
