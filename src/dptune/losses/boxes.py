"""Box utilities for the grounding (REC) head: format conversions, IoU and generalized IoU.

Boxes are normalised to [0, 1]. The adapter predicts ``(cx, cy, w, h)``; overlap measures work on corners
``(x0, y0, x1, y1)``. IoU / GIoU (Rezatofighi et al. 2019, the "GIoU" of paper Eqs. 5 and 7) are written once,
elementwise with broadcasting; the pairwise matrix is the same code on ``a[:, None]`` and ``b[None, :]``.

Degenerate boxes (zero width or height, or a zero-area pair) never produce NaN: denominators are clamped
to a small epsilon, so two identical points get IoU 0 and GIoU 0 (not 1), which is harmless because such
boxes do not occur as gold boxes and predicted ones are pushed away from them by the L1 term.
"""

from __future__ import annotations

import torch

EPS = 1e-7


def cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """``(..., 4)`` centre/size -> ``(..., 4)`` corners."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    """``(..., 4)`` corners -> ``(..., 4)`` centre/size."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack([(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], dim=-1)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Area of ``(..., 4)`` xyxy boxes; inverted boxes (x1 < x0) count as empty instead of negative."""
    return (boxes[..., 2] - boxes[..., 0]).clamp(min=0) * (boxes[..., 3] - boxes[..., 1]).clamp(min=0)


def _overlap_terms(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Intersection, union and enclosing-box area of broadcastable xyxy boxes ``a``, ``b`` (..., 4)."""
    lo = torch.maximum(a[..., :2], b[..., :2])  # (..., 2) top-left of the intersection
    hi = torch.minimum(a[..., 2:], b[..., 2:])  # (..., 2) bottom-right of the intersection
    inter = (hi - lo).clamp(min=0).prod(-1)  # (...)
    union = box_area(a) + box_area(b) - inter  # (...)
    enc_lo = torch.minimum(a[..., :2], b[..., :2])
    enc_hi = torch.maximum(a[..., 2:], b[..., 2:])
    enclosing = (enc_hi - enc_lo).clamp(min=0).prod(-1)  # (...)
    return inter, union, enclosing


def iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Elementwise IoU of broadcastable xyxy boxes ``(..., 4)`` -> ``(...)``."""
    inter, union, _ = _overlap_terms(a, b)
    return inter / union.clamp(min=EPS)


def generalized_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Elementwise GIoU = IoU - (C - U) / C with C the enclosing box area, in [-1, 1]."""
    inter, union, enclosing = _overlap_terms(a, b)
    iou_ = inter / union.clamp(min=EPS)
    return iou_ - (enclosing - union) / enclosing.clamp(min=EPS)


def pairwise_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU matrix of xyxy boxes ``a`` (N, 4) and ``b`` (M, 4) -> (N, M)."""
    return iou(a[:, None, :], b[None, :, :])


def pairwise_generalized_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """GIoU matrix of xyxy boxes ``a`` (N, 4) and ``b`` (M, 4) -> (N, M)."""
    return generalized_iou(a[:, None, :], b[None, :, :])
