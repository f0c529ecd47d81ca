"""DPT's discriminative adapter as a referee: the bridge between the two methods.

score(image, text) = the adapter's matching score s(z_t, y) (paper DPT Sec. 3.1) on the image encoded by the
VAE to latents and noised to a fixed timestep ``t`` with a fixed noise draw (the same for every call, so the
score is a deterministic, differentiable function of the image). It is a cosine, not a log-odds: loss = -s.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dptune.methods.referee.interface import Referee


class DPTReferee(Referee):
    name = "dpt"
    log_odds = False

    def __init__(self, probe, t: int = 100, noise_seed: int = 0) -> None:
        if not 0 <= t < probe.backbone.num_train_timesteps:
            raise ValueError(f"DPT referee timestep t={t} must be in [0, {probe.backbone.num_train_timesteps})")
        self.probe, self.t, self.noise_seed = probe, t, noise_seed
        self._text: dict[tuple[str, ...], object] = {}

    @classmethod
    def load(cls, adapter: str, backbone, t: int = 100) -> DPTReferee:
        from dptune.adapter import load_probe

        return cls(load_probe(backbone, adapter), t=t)

    def _noise(self, shape: torch.Size, device, dtype) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.noise_seed)
        one = torch.randn((1, *shape[1:]), generator=gen)  # one draw, shared by every image and call
        return one.expand(shape).to(device, dtype)

    def _score(self, images: torch.Tensor, texts: list[str]) -> torch.Tensor:
        bb = self.probe.backbone
        size = bb.image_size
        if images.shape[-2:] != (size, size):
            images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        key = tuple(texts)
        if key not in self._text:
            self._text = {key: self.probe.encode_text(texts)}
        text = self._text[key]
        latents = bb.vae.encode((images * 2 - 1).to(bb.device, bb.dtype)).latent_dist.mode()
        latents = latents * bb.vae.config.scaling_factor  # (B, 4, h, w), differentiable (no no_grad here)
        t = torch.full((latents.shape[0],), self.t, device=latents.device, dtype=torch.long)
        z_t = bb.add_noise(latents, self._noise(latents.shape, latents.device, latents.dtype), t)
        return self.probe.scores(z_t, t, text).float()  # (B,)
