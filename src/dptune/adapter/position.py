"""Position and timestep embeddings added to every feature location (paper Sec. 3.1, "additive fusion")."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sine_position_2d(h: int, w: int, dim: int, temperature: float = 10000.0, device=None) -> torch.Tensor:
    """Fixed, normalised 2-D sine position code (DETR style) -> (h * w, dim), row-major like ``flatten``.

    Half the channels encode the row, half the column; coordinates are normalised to (0, 2 pi] so the same
    code describes relative positions for any grid size.
    """
    if dim % 4:
        raise ValueError(f"2-D sine position embedding needs dim divisible by 4; got {dim}")
    npf = dim // 2  # channels per axis
    freq = temperature ** (2 * torch.arange(npf // 2, device=device, dtype=torch.float32) / npf)  # (npf/2,)
    ys = (torch.arange(h, device=device, dtype=torch.float32) + 1) / h * 2 * math.pi  # (h,)
    xs = (torch.arange(w, device=device, dtype=torch.float32) + 1) / w * 2 * math.pi  # (w,)

    def code(pos: torch.Tensor) -> torch.Tensor:
        ang = pos[:, None] / freq[None, :]  # (L, npf/2)
        return torch.cat([ang.sin(), ang.cos()], dim=-1)  # (L, npf)

    cy = code(ys)[:, None, :].expand(h, w, npf)  # (h, w, npf)
    cx = code(xs)[None, :, :].expand(h, w, npf)  # (h, w, npf)
    return torch.cat([cy, cx], dim=-1).reshape(h * w, dim)  # (h*w, dim)


class LearnedPosition2D(nn.Module):
    """Learnable ``max_grid x max_grid`` position table, bilinearly resized to the feature map's size."""

    def __init__(self, dim: int, max_grid: int) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.empty(1, dim, max_grid, max_grid))  # (1, D, G, G)
        nn.init.trunc_normal_(self.table, std=0.02)

    def forward(self, h: int, w: int) -> torch.Tensor:
        table = self.table
        if table.shape[-2:] != (h, w):
            table = F.interpolate(table, size=(h, w), mode="bilinear", align_corners=False)  # (1, D, h, w)
        return table[0].flatten(1).t()  # (h*w, D)


def timestep_sinusoid(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Transformer-style sinusoidal code of diffusion timesteps ``t`` (B,) -> (B, dim), [cos | sin]."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None, :]  # (B, half)
    emb = torch.cat([args.cos(), args.sin()], dim=-1)  # (B, 2*half)
    return F.pad(emb, (0, dim - 2 * half))  # (B, dim): zero-pad odd dims


class TimestepEmbedding(nn.Module):
    """Sinusoid -> Linear -> SiLU -> Linear, as the U-Net's own time embedding (official: 256->1024->256)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        code = timestep_sinusoid(t, self.dim).to(self.mlp[0].weight.dtype)  # (B, dim), match fp16/bf16
        return self.mlp(code)  # (B, dim)
