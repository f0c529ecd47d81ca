"""Image-text matching (ITM) contrastive losses, paper Eqs. 3 (T->I) and 4 (I->T).

All functions take similarity scores ``s(z, y)`` (cosines in [-1, 1], see
:func:`dptune.adapter.heads.max_cosine`) and the *logit scale* ``1 / tau`` (the adapter's learnable,
clamped ``logit_scale``), and return a scalar mean over the batch.

Two negative structures are supported:

* **Hard negatives (default, as the official code).** Per sample, the I->T loss (Eq. 4) is a softmax over
  ``[s(z, y), s(z, y_hn), s(z, y_rand)]`` on the positive image and the T->I loss (Eq. 3) a softmax over
  ``[s(z, y), s(z_hn, y), s(z_rand, y)]`` for the positive caption; the target is column 0. Any K >= 2
  candidates work; put the positive first.
* **In-batch negatives (optional, CLIP style).** A ``(B, B)`` matrix ``S[i, j] = s(z_i, y_j)`` with the
  matching pairs on the diagonal, which is Eqs. 3-4 exactly as the paper writes them (sums over the
  mini-batch). It can be used alone or added to the hard-negative terms (see ``LossWeights.in_batch``).
  Note that with a text-conditioned U-Net every off-diagonal entry costs one extra U-Net pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _check_scores(scores: torch.Tensor, name: str) -> None:
    if scores.ndim != 2 or scores.shape[1] < 2:
        raise ValueError(
            f"{name} must be a (B, K) score matrix with K >= 2 candidates (positive first); "
            f"got shape {tuple(scores.shape)}"
        )


def _scaled_ce(scores: torch.Tensor, logit_scale: torch.Tensor | float, targets: torch.Tensor | None):
    # targets default to column 0: the hard-negative layout stores the positive first.
    if targets is None:
        targets = torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)
    return F.cross_entropy(logit_scale * scores, targets)


def text_to_image_loss(
    scores: torch.Tensor, logit_scale: torch.Tensor | float, targets: torch.Tensor | None = None
) -> torch.Tensor:
    """Eq. 3, L^{T->I} = -log exp(s(z, y)/tau) / sum_j exp(s(z_j, y)/tau).

    ``scores`` (B, K): row b holds the scores of K candidate *images* for caption b, the correct one at
    column ``targets[b]`` (default 0, i.e. ``[positive, hard-negative, random]`` images).
    """
    _check_scores(scores, "text_to_image_loss scores")
    return _scaled_ce(scores, logit_scale, targets)


def image_to_text_loss(
    scores: torch.Tensor, logit_scale: torch.Tensor | float, targets: torch.Tensor | None = None
) -> torch.Tensor:
    """Eq. 4, L^{I->T} = -log exp(s(z, y)/tau) / sum_j exp(s(z, y_j)/tau).

    ``scores`` (B, K): row b holds the scores of K candidate *captions* for image b, the correct one at
    column ``targets[b]`` (default 0, i.e. ``[positive, hard-negative, random]`` captions).
    """
    _check_scores(scores, "image_to_text_loss scores")
    return _scaled_ce(scores, logit_scale, targets)


def in_batch_matching_loss(
    similarity: torch.Tensor, logit_scale: torch.Tensor | float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eqs. 3-4 with in-batch negatives. ``similarity`` (B, B) = s(z_i, y_j); returns (L^{T->I}, L^{I->T})."""
    if similarity.ndim != 2 or similarity.shape[0] != similarity.shape[1] or similarity.shape[0] < 2:
        raise ValueError(
            "in-batch similarity must be a square (B, B) matrix s(z_i, y_j) with B >= 2 and the matching "
            f"pairs on the diagonal; got shape {tuple(similarity.shape)}"
        )
    diag = torch.arange(similarity.shape[0], device=similarity.device)  # (B,)
    t2i = text_to_image_loss(similarity.t(), logit_scale, diag)  # rows = captions, columns = images
    i2t = image_to_text_loss(similarity, logit_scale, diag)  # rows = images, columns = captions
    return t2i, i2t


def matching_credit(scores, labels) -> torch.Tensor:
    """The one ITM accuracy rule (training validation and evaluation alike): per item of a (N, K) score matrix,
    1 if the labelled candidate is the unique maximum, 1/m if it ties with m-1 others there, else 0 -> (N,).

    Ties split the credit so that a probe that scores every candidate alike earns chance, not 100%.
    """
    s = torch.as_tensor(scores, dtype=torch.float64)
    lab = torch.as_tensor(labels, dtype=torch.long)
    if s.ndim != 2 or lab.shape != (s.shape[0],):
        raise ValueError(f"scores must be (N, K) and labels (N,), got {tuple(s.shape)} and {tuple(lab.shape)}")
    tied = (s - s.max(1, keepdim=True).values).abs() <= 1e-7  # (N, K) candidates at the maximum
    return tied[torch.arange(len(lab)), lab] / tied.sum(1)
