"""Self-correction as a latent update (paper Sec. 3.3, Eq. 9): z_hat_t = z_t + eta * d score(z_t) / d z_t.

``score`` is any :class:`~dptune.sampling.guidance.GuidanceObjective` (DPT's matching score in the paper).
The gradient is taken w.r.t. the latent the scheduler holds: the objective sees
``scheduler.scale_model_input(z_t, t)`` (a rescaling for Euler, the identity for DDIM/PNDM/DPM-Solver), so
the chain rule through that scaling is part of the gradient.

Precision: the latent leaf, the score and the update are fp32 even when the model runs in fp16/bf16; for an
fp16 model the score is multiplied by a loss scale before backward so small gradients do not flush to zero.
Only ``torch.autograd.grad(..., inputs=[latent])`` is used, so no ``.grad`` ever lands on model parameters.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from dptune.sampling.config import SelfCorrectionConfig
from dptune.sampling.guidance import GuidanceCond, GuidanceObjective

FP16_LOSS_SCALE = 2.0**12  # scores are O(1): 4096 * s cannot overflow fp16, and lifts ~1e-8 grads
RMS_EPS = 1e-12

@dataclass
class CorrectionRecord:
    """What one corrected step did (kept in :attr:`SelfCorrector.history` for metadata and tests)."""

    step: int
    timestep: float
    score: list[float]  # s(z_t, y) per sample before the move
    grad_rms: list[float]  # RMS of ds/dz per sample (before normalisation)
    reused: bool  # the gradient came from an earlier step (grad_every > 1)


class SelfCorrector:
    """Computes d score/dz_t of a :class:`GuidanceObjective` and applies Eq. 9; one instance per batch.

    ``half``: the model the objective runs runs in fp16 (the score is loss-scaled before backward).
    """

    def __init__(self, objective: GuidanceObjective, config: SelfCorrectionConfig, half: bool = False) -> None:
        if not callable(getattr(objective, "score", None)):
            raise TypeError(f"{type(objective).__name__} is not a GuidanceObjective: it has no score(x, t, cond)")
        self.objective = objective
        self.config = config
        self.half = half
        self.history: list[CorrectionRecord] = []
        self._cached: torch.Tensor | None = None  # last (possibly normalised) gradient, for grad_every > 1
        self._computed = 0  # corrected steps so far (decides recompute vs reuse)

    def active(self, step_index: int, num_steps: int) -> bool:
        return self.config.active(step_index, num_steps)

    def score(self, latents: torch.Tensor, t: torch.Tensor, cond: GuidanceCond,
              scale_fn: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """The objective's score per sample -> (B,) fp32, differentiable w.r.t. ``latents``."""
        x = scale_fn(latents) if scale_fn is not None else latents  # (B, C, h, w) what the model sees
        return self.objective.score(x, t, cond).float()

    def gradient(
        self,
        latents: torch.Tensor,
        t: torch.Tensor,
        cond: GuidanceCond,
        scale_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(d score/dz_t as fp32 (B, C, h, w), score (B,)).

        Samples are independent, so one backward of sum_i s_i gives every ds_i/dz_i.
        """
        loss_scale = FP16_LOSS_SCALE if self.half else 1.0
        for attempt_scale in (loss_scale, 1.0):
            z = latents.detach().float().requires_grad_(True)  # (B, C, h, w) fp32 leaf
            with torch.enable_grad():
                s = self.score(z, t, cond, scale_fn)  # (B,)
                (grad,) = torch.autograd.grad(s.sum() * attempt_scale, [z])
            grad = grad / attempt_scale
            if torch.isfinite(grad).all() or attempt_scale == 1.0:
                break
        if not torch.isfinite(grad).all():
            warnings.warn(
                "self-correction gradient is not finite at this step; skipping the correction", stacklevel=2
            )
            grad = torch.zeros_like(grad)
        return grad, s.detach()

    def correct(
        self,
        latents: torch.Tensor,
        t: torch.Tensor,
        cond: GuidanceCond,
        step_index: int,
        scale_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Eq. 9: z_hat_t = z_t + eta * g, with g = ds/dz_t (optionally unit-RMS per sample). fp32 result."""
        cfg = self.config
        reuse = self._cached is not None and self._computed % cfg.grad_every != 0
        if reuse:
            direction = self._cached
            record = CorrectionRecord(step_index, float(t), [], [], reused=True)
        else:
            grad, s = self.gradient(latents, t, cond, scale_fn)  # (B, C, h, w), (B,)
            rms = grad.pow(2).mean(dim=(1, 2, 3)).sqrt()  # (B,)
            direction = grad / (rms[:, None, None, None] + RMS_EPS) if cfg.normalize_grad else grad
            self._cached = direction
            record = CorrectionRecord(step_index, float(t), s.tolist(), rms.tolist(), reused=False)
        self._computed += 1
        self.history.append(record)
        if cfg.grad_space == "model_input" and scale_fn is not None:
            direction = direction * _input_space_factor(latents, scale_fn, cfg.normalize_grad)
        return latents.float() + cfg.eta * direction  # (B, C, h, w)


def _input_space_factor(
    latents: torch.Tensor, scale_fn: Callable[[torch.Tensor], torch.Tensor], normalized: bool
) -> torch.Tensor:
    """Factor turning a latent-space step into "Eq. 9 applied to x = c * z" (c from scale_model_input).

    With x = c z: ds/dx = (ds/dz) / c and z_hat = (x + eta ds/dx) / c = z + eta (ds/dz) / c^2; with unit-RMS
    normalisation the RMS cancels one c: z + eta unit(ds/dz) / c. For DDIM/PNDM/DPM-Solver c = 1.
    """
    c = scale_fn(torch.ones_like(latents[:1], dtype=torch.float32)).flatten()[0]  # () per-timestep scalar
    return 1.0 / c if normalized else 1.0 / c**2
