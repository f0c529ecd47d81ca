"""The inversion loop (Liu et al. 2024, official code Pepper-lll/VLMinv): optimise the SD latent itself.

Per iteration i (of ``iterations``; the referee acts while i < ``referee_iters``):

1. SDS gradient g_s = sds_weight(i) * w_t (eps_hat_cfg - eps) / 4096 (:mod:`.sds`), sds_weight cosine
   800 -> 400 over all iterations;
2. decode z, draw ``views`` augmented views (:mod:`.augment`), keep the ``keep`` hardest (highest referee
   loss), add pixel noise, referee loss -> g_r = d loss / dz;
3. balance: g_r is rescaled per image to ``ref_weight`` times the norm of g_s (without SDS: to an RMS of
   ``ref_rms`` per latent element -- our choice, the paper always runs with SDS or BLIP-2 alone at its
   native scale);
4. z <- z - lr(i) (g_r + latent_noise * n1) - lr * g_s - latent_noise * n2 (the official update: SGD with the
   cosine schedule 1.0 -> 0.5 for the referee, a fixed step for SDS; after the referee stops, the noise is 0.01);
5. EMA (0.95) of z; written back into z at i + 1 = ema_start + k * ema_every (40, 100) while the referee acts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from dptune.methods.referee.augment import ViewConfig, augmented_views, build_views
from dptune.methods.referee.sds import SDSTerm
from dptune.utils.config import field


@dataclass
class InversionConfig(ViewConfig):
    """Every setting of the inversion (paper / official-code defaults)."""

    iterations: int = field(160, help="optimisation steps of the latent (paper 160)")
    referee_iters: int | None = field(None, help="the referee acts in the first this many steps (paper 150 of "
                                      "160); default: iterations - iterations // 16")
    lr: float = field(1.0, help="SGD learning rate (cosine to min_lr after lr_warmup steps)")
    min_lr: float = field(0.5, help="final learning rate of the cosine schedule")
    lr_warmup: int = field(10, help="linear warm-up steps of the learning rate (official code 10)")
    ref_weight: float = field(2.0, help="referee gradient = ref_weight x the SDS gradient norm (paper 2.0)")
    ref_rms: float = field(0.1, help="without SDS: RMS per latent element of the rescaled referee gradient")
    sds_weight: float = field(800.0, help="SDS weight at the start (0 = no SDS)")
    sds_weight_final: float = field(400.0, help="SDS weight at the end (cosine from sds_weight)")
    sds_guidance: float = field(30.0, help="classifier-free guidance of the SDS term (paper 30)")
    sds_t_range: tuple[float, float] = field((50.0, 950.0), help="SDS timesteps t ~ U[t_min, t_max)")
    sds_w_t: float = field(2.0, help="SDS time weighting w(t) (constant, paper 2)")
    sds_prefix: str | None = field(None, help="prefix of the SDS prompt (paper 'A photo exactly contains '); "
                                   "default: the paper's for real SD, none for a world's shipped model")
    latent_noise: float = field(0.2, help="Gaussian noise added to the latent at every step (paper 0.2)")
    ema_decay: float = field(0.95, help="EMA decay of the latent (0 = no EMA)")
    ema_start: int = field(40, help="first EMA write-back (iteration)")
    ema_every: int = field(60, help="iterations between EMA write-backs")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.sds_t_range = tuple(float(v) for v in self.sds_t_range)
        if self.referee_iters is None:
            self.referee_iters = self.iterations - self.iterations // 16
        if self.iterations < 1 or not 0 <= self.referee_iters <= self.iterations:
            raise ValueError(f"need iterations >= 1 and 0 <= referee_iters <= iterations; got {self.iterations}, "
                             f"{self.referee_iters}")
        if min(self.lr, self.min_lr, self.ref_weight, self.ref_rms, self.sds_weight, self.sds_weight_final,
               self.latent_noise, self.sds_w_t) < 0 or not 0 <= self.ema_decay < 1:
            raise ValueError("step sizes, weights and noise must be >= 0 and ema_decay in [0, 1)")
        if len(self.sds_t_range) != 2 or min(self.ema_start, self.ema_every, self.lr_warmup + 1) < 1:
            raise ValueError("sds_t_range needs two values (t_min:t_max); ema_start, ema_every must be >= 1")

    @property
    def uses_sds(self) -> bool:
        return self.sds_weight > 0 or self.sds_weight_final > 0


def cosine(start: float, end: float, i: int, n: int) -> float:
    """start -> end along half a cosine over n steps."""
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * min(i, n) / max(n, 1)))


def learning_rate(cfg: InversionConfig, i: int) -> float:
    if i < cfg.lr_warmup:
        return cfg.lr * (i + 1) / cfg.lr_warmup
    return cosine(cfg.lr, cfg.min_lr, i - cfg.lr_warmup, cfg.iterations - cfg.lr_warmup)


def _per_image_norm(g: torch.Tensor) -> torch.Tensor:
    return g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)  # (B, 1, 1, 1)


class Inverter:
    """Runs the loop for a batch of prompts on ``backbone`` (frozen SD) with ``referee``."""

    def __init__(self, backbone, referee, cfg: InversionConfig, sds_prefix: str = "",
                 latent_side: int | None = None) -> None:
        self.bb, self.referee, self.cfg, self.prefix = backbone, referee, cfg, sds_prefix
        self.side = latent_side or backbone.latent_size
        self.views = build_views(cfg)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return (self.bb.decode_latents(z).float() + 1) / 2  # (B, 3, H, W) in [0, 1]

    def referee_grad(self, z: torch.Tensor, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(gradient of the mean kept-view loss w.r.t. z (B, 4, h, w), that loss (B,))."""
        cfg, b = self.cfg, z.shape[0]
        z = z.detach().requires_grad_(True)
        views = augmented_views(self.decode(z), self.views, cfg.views)  # (B, N, 3, H, W)
        flat = views.flatten(0, 1)  # (B*N, 3, H, W)
        texts = [p for p in prompts for _ in range(cfg.views)]
        with torch.no_grad():
            hardest = self.referee.loss(flat, texts).view(b, cfg.views).topk(cfg.keep, dim=1).indices  # (B, K)
        kept = views[torch.arange(b).unsqueeze(1), hardest].flatten(0, 1)  # (B*K, 3, H, W)
        kept = kept + cfg.pixel_noise * torch.randn_like(kept)
        loss = self.referee.loss(kept, [p for p in prompts for _ in range(cfg.keep)]).view(b, cfg.keep).mean(1)
        (grad,) = torch.autograd.grad(loss.sum(), z)
        return grad, loss.detach()

    def __call__(self, prompts: list[str], seeds: list[int], progress: bool = False,
                 init: torch.Tensor | None = None) -> tuple[torch.Tensor, list]:
        """-> images (B, 3, H, W) in [0, 1] and the referee-loss curve (mean over the batch, per iteration).
        The latent starts from each seed's Gaussian draw (the paper) or from ``init`` (B, 4, h, w)."""
        from tqdm.auto import tqdm

        cfg, bb = self.cfg, self.bb
        side, channels = self.side, bb.unet.config.in_channels
        z = init.float().to(bb.device) if init is not None else torch.stack(
            [torch.randn((channels, side, side), generator=torch.Generator().manual_seed(int(s))) for s in seeds]
        ).to(bb.device, torch.float32)  # (B, 4, h, w)
        gen = torch.Generator().manual_seed(int(seeds[0]) * 7919 + 17)
        sds = SDSTerm(bb, prompts, cfg.sds_guidance, cfg.sds_t_range, cfg.sds_w_t, prefix=self.prefix) \
            if cfg.uses_sds else None
        ema, curve = None, []
        for i in tqdm(range(cfg.iterations), desc="referee inversion", disable=not progress, leave=False):
            g_sds = torch.zeros_like(z)
            if sds is not None:
                g_sds = cosine(cfg.sds_weight, cfg.sds_weight_final, i, cfg.iterations) * sds.grad(z, gen)
            if i < cfg.referee_iters:
                g_ref, loss = self.referee_grad(z, prompts)
                curve.append(float(loss.mean()))
                target = _per_image_norm(g_sds) if sds is not None else cfg.ref_rms * math.sqrt(z[0].numel())
                step = cfg.ref_weight * target * g_ref / _per_image_norm(g_ref)
                noise = cfg.latent_noise
                z = z - learning_rate(cfg, i) * (step + noise * torch.randn(z.shape, generator=gen).to(z))
            else:
                noise = 0.01 if cfg.latent_noise > 0 else 0.0
            z = (z - cfg.lr * g_sds + noise * torch.randn(z.shape, generator=gen).to(z)).detach()
            if not torch.isfinite(z).all():
                raise FloatingPointError(
                    f"referee: the latent became NaN/inf at iteration {i} (prompts {prompts[:2]}...); lower lr, "
                    "sds_weight or sds_guidance")
            if cfg.ema_decay > 0:
                ema = z.clone() if ema is None else cfg.ema_decay * ema + (1 - cfg.ema_decay) * z
                k = i + 1 - cfg.ema_start
                if k >= 0 and k % cfg.ema_every == 0 and i + 1 <= cfg.referee_iters:
                    z = ema.clone()
        with torch.no_grad():
            return self.decode(z), curve
