"""Score distillation (SDS, Poole et al. 2023) from the loaded Stable Diffusion, as the referee paper uses it.

grad_z = w_t (eps_hat_cfg(z_t, t, y) - eps) / A with t ~ U[t_min, t_max), w_t = 2 (constant), CFG 30 and
A = 64 * 64 = 4096: the official code divides the summed SDS loss by SD1.5's latent area. A stays 4096 at
every latent size so the per-element step matches the paper's (dividing by the tiny model's 8 * 8 area
would make it 64 times larger).
"""

from __future__ import annotations

import torch


class SDSTerm:
    """The SDS gradient of a batch of latents (no autograd graph: SDS *is* a gradient, not a loss)."""

    def __init__(self, backbone, prompts: list[str], guidance: float = 30.0, t_range: tuple[float, float] = (50, 950),
                 w_t: float = 2.0, area: float = 4096.0, prefix: str = "") -> None:
        self.bb, self.guidance, self.w_t, self.area = backbone, guidance, w_t, area
        n = backbone.num_train_timesteps
        self.t_min, self.t_max = int(t_range[0]), min(int(t_range[1]), n) - 1  # official: avoid the highest t
        if not 0 <= self.t_min < self.t_max:
            raise ValueError(f"SDS t range {t_range} must satisfy 0 <= t_min < t_max - 1 <= {n - 1}")
        with torch.no_grad():
            cond = backbone.encode_text([prefix + p for p in prompts]).hidden  # (B, L, D)
            uncond = backbone.encode_text([""] * len(prompts)).hidden  # (B, L, D)
        self.hidden = torch.cat([uncond, cond])  # (2B, L, D)
        sched = backbone.noise_scheduler
        abar = sched.alphas_cumprod.to(backbone.device, torch.float32)
        self.alpha, self.sigma = abar.sqrt(), (1 - abar).sqrt()  # (T,)
        self.v_pred = sched.config.prediction_type == "v_prediction"

    @torch.no_grad()
    def grad(self, z: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """(B, 4, h, w) latents -> (B, 4, h, w) SDS gradient (unit SDS weight)."""
        b = z.shape[0]
        t = torch.randint(self.t_min, self.t_max, (b,), generator=generator).to(z.device)  # (B,)
        eps = torch.randn(z.shape, generator=generator).to(z.device, z.dtype)
        a, s = self.alpha[t].view(b, 1, 1, 1), self.sigma[t].view(b, 1, 1, 1)
        z_t = a * z + s * eps  # (B, 4, h, w)
        unet = self.bb.unet
        out = unet(torch.cat([z_t, z_t]).to(unet.dtype), torch.cat([t, t]),
                   encoder_hidden_states=self.hidden.to(unet.dtype)).sample.float()  # (2B, 4, h, w)
        if self.v_pred:  # v -> eps
            out = torch.cat([a, a]) * out + torch.cat([s, s]) * torch.cat([z_t, z_t])
        e_u, e_c = out.chunk(2)
        e_cfg = e_u + self.guidance * (e_c - e_u)
        return torch.nan_to_num(self.w_t * (e_cfg - eps) / self.area)
