"""The self-correction step of paper Sec. 3.3, Eq. 9: z_hat_t = z_t + eta * d s(z_t, y) / d z_t.

s(z_t, y) is the adapter's matching score (max over the matching queries of cos(CLIP(y), h_i), Sec. 3.1)
read from a *truncated* U-Net pass that stops at the probed block, with the U-Net conditioned on y (as in
training). The gradient is taken w.r.t. the latent the scheduler holds: the U-Net sees
``scheduler.scale_model_input(z_t, t)`` (a rescaling for Euler, the identity for DDIM/PNDM/DPM-Solver), so
the chain rule through that scaling is part of the gradient.

Precision: the latent leaf, the score and the update are fp32 even when the U-Net runs in fp16/bf16; for an
fp16 U-Net the score is multiplied by a loss scale before backward so small gradients do not flush to zero.
Only ``torch.autograd.grad(..., inputs=[latent])`` is used, so no ``.grad`` ever lands on model parameters.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from dptune.adapter import DPTProbe
from dptune.backbone import TextEmbeddings
from dptune.sampling.config import SelfCorrectionConfig
from dptune.sampling.grounded import GroundingTargets, relation_objective

FP16_LOSS_SCALE = 2.0**12  # s is a cosine (|s| <= 1): 4096 * s cannot overflow fp16, and lifts ~1e-8 grads
RMS_EPS = 1e-12


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Dropout off while scoring (the adapter has dropout 0.1); restores the caller's train/eval state."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


@dataclass
class CorrectionRecord:
    """What one corrected step did (kept in :attr:`SelfCorrector.history` for metadata and tests)."""

    step: int
    timestep: float
    score: list[float]  # s(z_t, y) per sample before the move
    grad_rms: list[float]  # RMS of ds/dz per sample (before normalisation)
    reused: bool  # the gradient came from an earlier step (grad_every > 1)


class SelfCorrector:
    """Computes ds/dz_t with a :class:`DPTProbe` and applies Eq. 9; one instance per generation call."""

    def __init__(self, probe: DPTProbe, config: SelfCorrectionConfig,
                 grounding: GroundingTargets | None = None) -> None:
        if config.objective == "grounded" and grounding is None:
            raise ValueError("the 'grounded' objective needs the batch's GroundingTargets (built from the prompts)")
        self.probe = probe
        self.config = config
        self.grounding = grounding
        self.history: list[CorrectionRecord] = []
        self._cached: torch.Tensor | None = None  # last (possibly normalised) gradient, for grad_every > 1
        self._computed = 0  # corrected steps so far (decides recompute vs reuse)

    def active(self, step_index: int, num_steps: int) -> bool:
        return self.config.active(step_index, num_steps)

    def score(
        self,
        latents: torch.Tensor,
        t: torch.Tensor,
        text: TextEmbeddings,
        scale_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """s(z_t, y) per sample -> (B,) fp32, differentiable w.r.t. ``latents`` (the scheduler's latent).

        With ``objective='grounded'`` the relation hinge of :mod:`dptune.sampling.grounded` instead.
        """
        unet = self.probe.unet
        x = scale_fn(latents) if scale_fn is not None else latents  # (B, C, h, w) what the U-Net sees
        if self.config.objective == "grounded":
            with eval_mode(self.probe.adapter):
                return relation_objective(self.probe, x, t, text.hidden, self.grounding, self.config.ground_t,
                                          self.config.relation_margin)
        feats = self.probe.features(x.to(unet.dtype), t, text.hidden.to(unet.dtype))  # (B, Cf, hf, wf)
        adapter = self.probe.adapter
        with eval_mode(adapter):
            out = adapter(feats.to(adapter.input_proj.weight.dtype), t)
        return adapter.match_score(out.match_emb.float(), text.pooled.float())  # (B,)

    def gradient(
        self,
        latents: torch.Tensor,
        t: torch.Tensor,
        text: TextEmbeddings,
        scale_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(ds/dz_t as fp32 (B, C, h, w), s(z_t, y) (B,)).

        Samples are independent, so one backward of sum_i s_i gives every ds_i/dz_i.
        """
        loss_scale = FP16_LOSS_SCALE if self.probe.unet.dtype == torch.float16 else 1.0
        for attempt_scale in (loss_scale, 1.0):
            z = latents.detach().float().requires_grad_(True)  # (B, C, h, w) fp32 leaf
            with torch.enable_grad():
                s = self.score(z, t, text, scale_fn)  # (B,)
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
        text: TextEmbeddings,
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
            grad, s = self.gradient(latents, t, text, scale_fn)  # (B, C, h, w), (B,)
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
