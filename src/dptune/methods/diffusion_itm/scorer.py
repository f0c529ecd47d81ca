"""DiffusionITM (Krojer et al., NeurIPS 2023; McGill-NLP/diffusion-itm): Stable Diffusion as a zero-shot
image-text scorer, and the same scorer over an HN-fine-tuned LoRA (HN-DiffusionITM).

    score(image, text) = -mean_t || eps_t - eps_hat(z_t, t, text) ||_2,   z_t = add_noise(z_0, eps_t, t)

over a fixed grid t in {10, 110, ..., 910}, with one noise draw eps_t per t shared by every image and text
(candidates differ only in what is scored). For image retrieval (one text, several images) the paper subtracts
the unconditional distance || eps_t - eps_hat(z_t, t, "") ||: images that are simply easy to denoise must not
win. Subtracting it for text retrieval too changes no ranking (it is the same for every text of one image), so
the scorer always subtracts it (``subtract_uncond``) and need not know the direction.

Fitting dptune's discriminative evaluation (:func:`dptune.evaluation.discriminative.evaluate_itm`): that code
encodes the candidates with ``probe.backbone``, noises them at ONE timestep and calls ``probe.scores(z_t, t,
text)``. DiffusionITM noises at its own grid, so the scorer's ``backbone`` is a view of the model whose
``add_noise`` returns the clean latent unchanged (see :class:`CleanLatents`); ``scores`` then receives z_0.
"""

from __future__ import annotations

import torch

DEFAULT_TIMESTEPS = tuple(range(10, 1000, 100))  # 10, 110, ..., 910 (the paper's grid)


class CleanLatents:
    """The backbone as ``evaluate_itm`` uses it, except that ``add_noise`` returns the clean latents."""

    def __init__(self, backbone) -> None:
        self._backbone = backbone

    def add_noise(self, latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return latents  # DiffusionITM noises at its own timesteps inside DiffusionITMScorer.scores

    def __getattr__(self, name: str):
        return getattr(self._backbone, name)


class DiffusionITMScorer:
    """Image-text scores from denoising errors; ``scores(z_0 (P, C, h, w), t, text) -> (P,)``, higher = better.

    ``backbone``: an :class:`~dptune.backbone.SDBackbone` (its U-Net may carry an HN LoRA).
    """

    supports_rec = False  # no grounding head: the evaluation should skip REC items for this probe

    def __init__(self, backbone, timesteps=DEFAULT_TIMESTEPS, seed: int = 0, subtract_uncond: bool = True,
                 chunk: int = 64) -> None:
        steps = [int(t) for t in timesteps]
        limit = backbone.num_train_timesteps
        if not steps or any(not 0 <= t < limit for t in steps):
            raise ValueError(f"timesteps must be a non-empty list in [0, {limit}); got {list(timesteps)}")
        self.model, self.timesteps, self.seed = backbone, steps, int(seed)
        self.subtract_uncond, self.chunk = bool(subtract_uncond), int(chunk)
        self.backbone = CleanLatents(backbone)

    def eval(self) -> DiffusionITMScorer:
        return self

    def noise(self, shape: tuple[int, ...], t: int) -> torch.Tensor:
        """eps_t (C, h, w): a pure function of (seed, t), shared by every pair scored at t."""
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + t)
        return torch.randn(shape, generator=gen)

    @torch.no_grad()
    def distances(self, z0: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """mean_t ||eps_t - eps_hat(z_t, t, text)||_2 -> (P,) for clean latents (P, C, h, w), context (P, L, D)."""
        bb = self.model
        z0 = z0.to(bb.device).float()
        total = torch.zeros(len(z0), device=z0.device)
        for t in self.timesteps:
            eps = self.noise(tuple(z0.shape[1:]), t).to(z0)[None].expand_as(z0)  # (P, C, h, w)
            tt = torch.full((len(z0),), t, dtype=torch.long, device=z0.device)
            target = bb.denoise_target(z0, eps, tt).float()  # (P, C, h, w): eps (or v)
            z_t = bb.add_noise(z0, eps, tt)  # (P, C, h, w)
            for a in range(0, len(z0), self.chunk):
                s = slice(a, a + self.chunk)
                pred = bb.predict_noise(z_t[s].to(bb.dtype), tt[s], hidden[s].to(bb.dtype)).float()
                total[s] += (pred - target[s]).flatten(1).norm(dim=1)  # (chunk,)
        return total / len(self.timesteps)

    @torch.no_grad()
    def scores(self, latents: torch.Tensor, t: torch.Tensor, text) -> torch.Tensor:
        """(P,) scores of clean ``latents`` (P, C, h, w) against ``text.hidden`` (P, L, D); ``t`` is unused."""
        cond = self.distances(latents, text.hidden)  # (P,)
        if not self.subtract_uncond:
            return -cond
        images, inverse = torch.unique(latents.flatten(1), dim=0, return_inverse=True)  # each image once
        images = images.view(-1, *latents.shape[1:])  # (U, C, h, w)
        empty = self.model.encode_text([""]).hidden  # (1, L, D)
        uncond = self.distances(images, empty.expand(len(images), -1, -1))  # (U,)
        return -(cond - uncond[inverse.to(uncond.device)])

    def __call__(self, *args, **kwargs):
        raise TypeError("DiffusionITM scores image-text pairs only (ITM); it has no grounding head for REC. "
                        "Evaluate it on ITM items (evaluate_itm), not on REC items")
