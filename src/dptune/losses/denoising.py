"""Denoising terms of stage 2: the MSE anchor (paper Sec. 3.2 / Table 9) and an optional denoising contrast.

The contrast is an extension, not in the DPT paper. It reads the U-Net as a diffusion classifier (the view of
Diffusion Classifier / DiffusionITM, which the paper compares against): on the same noisy latent, the noise
prediction conditioned on the true caption should be better than the one conditioned on its hard negative.
Unlike the adapter's matching loss, it ties the *denoiser* (and a tuned text encoder) to the edited word,
which is what generation follows.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def per_sample_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error of each sample: (B, C, h, w) x 2 -> (B,)."""
    return (pred.float() - target.float()).pow(2).flatten(1).mean(dim=1)


def denoising_contrast_loss(err_pos: torch.Tensor, err_neg: torch.Tensor, tau: float = 0.05) -> torch.Tensor:
    """-log sigmoid((e_neg - e_pos) / (tau * e_bar)): the true caption must denoise better than the negative.

    ``err_pos`` / ``err_neg`` (B,) are per-sample errors on the SAME noisy latent and noise. The difference is
    divided by their detached mean ``e_bar``, so ``tau`` is a relative margin (0.05: a 5% lower error under
    the true caption gives a logit of 1) and the loss does not depend on the error's scale across timesteps.
    It saturates once the true caption wins clearly, so it cannot push the negative's error up without bound.
    """
    if err_pos.shape != err_neg.shape or err_pos.ndim != 1:
        raise ValueError(f"expected two (B,) error vectors, got {tuple(err_pos.shape)} and {tuple(err_neg.shape)}")
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    scale = (0.5 * (err_pos + err_neg)).detach().clamp_min(1e-8)  # (B,)
    return F.softplus(-(err_neg - err_pos) / (tau * scale)).mean()
