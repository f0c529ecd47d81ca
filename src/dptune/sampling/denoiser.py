"""Denoisers for the sampling loop, k-diffusion style: the loop only calls ``denoiser.step(z, t, i, ...)``,
which returns ``(eps, base)``.

* :class:`CFGDenoiser` -- the U-Net with classifier-free guidance, computed exactly as diffusers'
  ``StableDiffusionPipeline`` does (same concatenation order, ``scale_model_input``, guidance formula), so
  that without correction the images are bit-identical to the stock pipeline.
* :class:`SelfCorrectingDenoiser` -- wraps a :class:`CFGDenoiser`; at corrected steps it moves the latent
  along an objective's gradient (paper Eq. 9) before the U-Net sees it. It also returns the latent the
  scheduler must step *from* (``base``): z_hat_t in ``paper`` mode, z_t in ``official`` mode. That return
  value is how the corrected latent reaches ``scheduler.step`` without forking the sampler per scheduler type.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch

from dptune.sampling.correction import SelfCorrector
from dptune.sampling.guidance import GuidanceCond


@dataclass
class Conditioning:
    """Text conditioning of one batch."""

    cond: torch.Tensor  # (B, L, D) prompt hidden states for the U-Net
    uncond: torch.Tensor | None  # (B, L, D) negative / empty prompt; None without CFG
    guidance: GuidanceCond | None = None  # what the objective scores; None: no correction


class CFGDenoiser:
    """eps_cfg(z_u, z_c, t) = eps(z_u, t, uncond) + w * (eps(z_c, t, y) - eps(z_u, t, uncond)).

    The two branches may get *different* latents (the official code's correction only moves the conditional
    one); in the usual case both are the same tensor.
    """

    def __init__(self, unet, scheduler, guidance_scale: float, guidance_rescale: float = 0.0) -> None:
        self.unet = unet
        self.scheduler = scheduler
        self.guidance_scale = float(guidance_scale)
        self.guidance_rescale = float(guidance_rescale)

    @property
    def do_cfg(self) -> bool:
        return self.guidance_scale > 1.0  # as diffusers: w <= 1 means a single conditional pass

    def __call__(
        self, z_uncond: torch.Tensor, z_cond: torch.Tensor, t: torch.Tensor, cond: Conditioning
    ) -> torch.Tensor:
        dtype = self.unet.dtype
        if not self.do_cfg:
            x = self.scheduler.scale_model_input(z_cond, t)  # (B, C, h, w)
            return self.unet(x.to(dtype), t, encoder_hidden_states=cond.cond, return_dict=False)[0]
        x = self.scheduler.scale_model_input(torch.cat([z_uncond, z_cond]), t)  # (2B, C, h, w)
        context = torch.cat([cond.uncond, cond.cond])  # (2B, L, D)
        eps = self.unet(x.to(dtype), t, encoder_hidden_states=context, return_dict=False)[0]  # (2B, C, h, w)
        eps_u, eps_c = eps.chunk(2)
        guided = eps_u + self.guidance_scale * (eps_c - eps_u)  # (B, C, h, w)
        if self.guidance_rescale > 0:
            from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg

            guided = rescale_noise_cfg(guided, eps_c, guidance_rescale=self.guidance_rescale)
        return guided

    def step(
        self, z: torch.Tensor, t: torch.Tensor, step_index: int, num_steps: int, cond: Conditioning
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Uniform sampler interface: (eps, latent to step from)."""
        return self(z, z, t, cond), z


class SelfCorrectingDenoiser:
    """Self-correction (Eq. 9) as a wrapper around a CFG denoiser: correct z_t, then denoise.

    ``paper`` mode: z_hat_t feeds both CFG branches and is returned as the step base, so the scheduler goes
    z_hat_t -> z_{t-1} ("we predict the noise by feeding z_hat_t into U-Net and then obtain z_{t-1}").
    ``official`` mode reproduces LgQu/DPT-T2I: z_hat_t only in the conditional branch, step from z_t.
    """

    def __init__(self, inner: CFGDenoiser, corrector: SelfCorrector) -> None:
        self.inner = inner
        self.corrector = corrector

    def step(
        self, z: torch.Tensor, t: torch.Tensor, step_index: int, num_steps: int, cond: Conditioning
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if cond.guidance is None or not self.corrector.active(step_index, num_steps):
            return self.inner.step(z, t, step_index, num_steps, cond)
        scale_fn = partial(self.inner.scheduler.scale_model_input, timestep=t)
        z_hat = self.corrector.correct(z, t, cond.guidance, step_index, scale_fn).to(z.dtype)  # (B, C, h, w)
        if self.corrector.config.mode == "official":
            return self.inner(z, z_hat, t, cond), z
        return self.inner(z_hat, z_hat, t, cond), z_hat
