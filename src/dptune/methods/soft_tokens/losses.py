"""SoftREPA and AGSM losses over all B x B (image, caption) pairs of a batch, from ONE batched denoiser call.

Pair (i, j) = noisy latent of image i (one timestep and one noise draw per image, shared by every caption)
under caption j; flattened index ``i * B + j``.

SoftREPA (arXiv 2503.08250): e_ij = MSE(pred_ij, target_i); logits_ij = s * exp(-e_ij / tau) (s = 4, tau =
0.07); cross-entropy over captions with the matching caption as the class, + w * mean_i e_ii (w = 10).

AGSM (Lee et al., ICML 2026): with an EMA copy of the token-augmented denoiser, r_ij = -MSE(target_i,
ema_ij), w_ij = softmax_j(r_ij / tau) (tau = 0.1), D_ij = ema_ij - sum_k w_ik ema_ik;
loss = mean_i ||pred_ii - (target_i + g+ D_ii)||^2 + mean_{i != j} ||pred_ij - (target_i - g- D_ij)||^2.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

# (z (N, C, h, w), t (N,), hidden (N, L, D), pooled (N, Dp) or None) -> prediction (N, C, h, w)
Denoise = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


def pair_inputs(z_t: torch.Tensor, t: torch.Tensor, hidden: torch.Tensor, pooled: torch.Tensor | None = None):
    """B images x B captions -> the B^2 rows of one denoiser call (row i * B + j = image i, caption j)."""
    b = z_t.shape[0]
    z = z_t.repeat_interleave(b, dim=0)  # (B^2, C, h, w)
    tt = t.repeat_interleave(b, dim=0)  # (B^2,)
    hid = hidden.repeat(b, 1, 1)  # (B^2, L, D)
    pool = None if pooled is None else pooled.repeat(b, 1)  # (B^2, Dp)
    return z, tt, hid, pool


def pair_predictions(denoise: Denoise, z_t: torch.Tensor, t: torch.Tensor, hidden: torch.Tensor,
                     pooled: torch.Tensor | None = None) -> torch.Tensor:
    """Predictions for every (image, caption) pair in one call -> (B, B, C, h, w)."""
    b = z_t.shape[0]
    pred = denoise(*pair_inputs(z_t, t, hidden, pooled))  # (B^2, C, h, w)
    return pred.view(b, b, *pred.shape[1:])


def pair_errors(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pair MSE: pred (B, B, C, h, w), target (B, C, h, w) of image i -> e (B, B)."""
    return (pred.float() - target.float()[:, None]).square().flatten(2).mean(-1)


def softrepa_loss(errors: torch.Tensor, logit_scale: float = 4.0, tau: float = 0.07,
                  mse_weight: float = 10.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """SoftREPA's loss from the (B, B) pair errors -> (total, {terms})."""
    logits = logit_scale * torch.exp(-errors / tau)  # (B, B): a small error = a high score
    labels = torch.arange(errors.shape[0], device=errors.device)
    contrast = F.cross_entropy(logits, labels)
    matched = errors.diagonal().mean()
    total = contrast + mse_weight * matched
    acc = (logits.argmax(1) == labels).float().mean()
    return total, {"contrast": contrast.detach(), "mse": matched.detach(), "pair_acc": acc.detach(),
                   "total": total.detach()}


def agsm_direction(ema_pred: torch.Tensor, target: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """D_ij = ema_ij - sum_k w_ik ema_ik with w_i. = softmax_j(-MSE(target_i, ema_ij) / tau) -> (B, B, C, h, w)."""
    ema_pred = ema_pred.float()
    w = torch.softmax(-pair_errors(ema_pred, target) / tau, dim=1)  # (B, B), rows sum to 1
    mean = torch.einsum("ik,ik...->i...", w, ema_pred)  # (B, C, h, w)
    return ema_pred - mean[:, None]


def agsm_loss(pred: torch.Tensor, ema_pred: torch.Tensor, target: torch.Tensor, tau: float = 0.1,
              gain_pos: float = 1.0, gain_neg: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """AGSM's loss: pred / ema_pred (B, B, C, h, w) (pred_ii from psi+, pred_ij from psi-), target (B, C, h, w)."""
    b = pred.shape[0]
    direction = agsm_direction(ema_pred, target, tau).detach()  # the EMA teacher gets no gradient
    target = target.float()[:, None]  # (B, 1, C, h, w)
    eye = torch.eye(b, dtype=torch.bool, device=pred.device)
    goal = torch.where(eye[..., None, None, None], target + gain_pos * direction, target - gain_neg * direction)
    err = (pred.float() - goal).square().flatten(2).mean(-1)  # (B, B)
    pos = err[eye].mean()
    neg = err[~eye].mean() if b > 1 else err.new_zeros(())
    total = pos + neg
    mse = pair_errors(pred.detach(), target[:, 0]).diagonal().mean()
    return total, {"matched": pos.detach(), "mismatched": neg.detach(), "mse": mse, "total": total.detach()}


def agsm_banks(b: int, device=None) -> torch.Tensor:
    """Bank of every pair row: psi+ (0) on the diagonal (matched), psi- (1) elsewhere -> (B^2,)."""
    return (~torch.eye(b, dtype=torch.bool, device=device)).long().flatten()
