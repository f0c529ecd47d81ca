"""Projection heads g(.; W) on the decoded queries Q* and the matching score s(y, z) (paper Sec. 3.1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MLP(nn.Module):
    """``layers`` Linear layers with ReLU in between: in -> hidden -> ... -> out."""

    def __init__(self, d_in: int, hidden: int, d_out: int, layers: int) -> None:
        super().__init__()
        dims = [d_in] + [hidden] * (layers - 1) + [d_out]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:], strict=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class GroundingHeads(nn.Module):
    """The three projections of each grounding query q*_j (Sec. 3.1, "Local Grounding"):
    p_j = g(q*_j; W_p) (logit), b_hat_j = g(q*_j; W_b) (sigmoid cxcywh), o_j = g(q*_j; W_s) (text space)."""

    def __init__(self, d_model: int, text_dim: int, box_layers: int) -> None:
        super().__init__()
        self.prob = nn.Linear(d_model, 1)
        self.box = MLP(d_model, d_model, 4, box_layers)
        # o_j lives in the text-embedding space so Eq. 6 can compare it with CLIP(y') directly.
        self.semantic = MLP(d_model, d_model, text_dim, 2)

    def forward(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits_p = self.prob(q).squeeze(-1)  # (B, Q)
        boxes = self.box(q).sigmoid()  # (B, Q, 4) normalised cxcywh
        obj_emb = self.semantic(q)  # (B, Q, Dt)
        return logits_p, boxes, obj_emb


def max_cosine(match_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
    """s(y, z) = max_i cos(CLIP(y), h_i) over the M matching queries (Sec. 3.1).

    ``match_emb`` (B, M, Dt) with ``text_emb`` (B, Dt) -> (B,), or with (B, K, Dt) -> (B, K) (K captions
    scored against the same image). Differentiable (the gradient flows through the arg-max query), which
    self-correction needs for d s / d z_t.
    """
    if match_emb.ndim != 3:
        raise ValueError(f"match_emb must be (B, M, D); got shape {tuple(match_emb.shape)}")
    squeeze = text_emb.ndim == 2
    if squeeze:
        text_emb = text_emb[:, None, :]  # (B, 1, Dt)
    if text_emb.ndim != 3 or text_emb.shape[0] != match_emb.shape[0] or text_emb.shape[-1] != match_emb.shape[-1]:
        raise ValueError(
            f"text_emb must be (B, D) or (B, K, D) with B={match_emb.shape[0]}, D={match_emb.shape[-1]} "
            f"(the adapter's text_dim); got shape {tuple(text_emb.shape)}"
        )
    h = F.normalize(match_emb, dim=-1)  # (B, M, Dt)
    y = F.normalize(text_emb.to(h.dtype), dim=-1)  # (B, K, Dt)
    cos = torch.einsum("bkd,bmd->bkm", y, h)  # (B, K, M)
    scores = cos.amax(dim=-1)  # (B, K)
    return scores[:, 0] if squeeze else scores


def max_cosine_matrix(match_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
    """All pairs: ``match_emb`` (B, M, Dt) of B images, ``text_emb`` (T, Dt) of T captions -> (B, T).

    For in-batch negatives. Only exact when the features did not depend on the caption; with a
    text-conditioned U-Net each (image, caption) pair needs its own pass and :func:`max_cosine`.
    """
    if match_emb.ndim != 3 or text_emb.ndim != 2 or text_emb.shape[-1] != match_emb.shape[-1]:
        raise ValueError(
            f"expected match_emb (B, M, D) and text_emb (T, D) with equal D; got {tuple(match_emb.shape)} "
            f"and {tuple(text_emb.shape)}"
        )
    cos = torch.einsum("td,bmd->btm", F.normalize(text_emb.to(match_emb.dtype), dim=-1), F.normalize(match_emb, dim=-1))
    return cos.amax(dim=-1)  # (B, T)
