"""A cross-attention grounding term: each object's words should look at that object (an extension, not DPT).

TokenCompose (Wang et al., CVPR 2024, Eq. 2, "token loss") supervises the U-Net's text cross-attention with
object masks: the attention map of an object's word, normalised over the image, should put its mass inside
the object's mask. ``exp_relation_text_separation.py`` (this folder) uses it to test whether keeping every
object grounded stops a denoising contrast from dropping objects (docs/relations.md).
"""

from __future__ import annotations

import torch


def token_attention_loss(maps: torch.Tensor, masks: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """mean over (sample, object) of (1 - sum(A * M) / sum(A))^2.

    ``maps`` (B, N, L): attention probabilities of N image positions over L text tokens (one layer, heads
    averaged; :meth:`relation_text.cross_attention.CrossAttention.maps`). ``masks`` (B, K, N): where each of
    up to K objects lies, in [0, 1] at the map's resolution (soft coverage is fine); an all-zero mask marks an
    absent object slot and is skipped. ``tokens`` (B, K, L) bool: the text tokens that name each object. A is
    the map of those tokens (summed over them), so A / sum(A) is where the words look.
    """
    if maps.ndim != 3 or masks.ndim != 3 or tokens.shape != (*masks.shape[:2], maps.shape[2]):
        raise ValueError(f"expected maps (B, N, L), masks (B, K, N), tokens (B, K, L); got {tuple(maps.shape)}, "
                         f"{tuple(masks.shape)}, {tuple(tokens.shape)}")
    if masks.shape[2] != maps.shape[1]:
        raise ValueError(f"masks have {masks.shape[2]} positions but the maps {maps.shape[1]}: resize the masks")
    word_maps = torch.einsum("bnl,bkl->bkn", maps, tokens.to(maps.dtype))  # (B, K, N)
    inside = (word_maps * masks).sum(-1) / word_maps.sum(-1).clamp_min(1e-8)  # (B, K)
    present = (masks.flatten(2).amax(-1) > 0) & tokens.any(-1)  # (B, K)
    if not present.any():
        return maps.sum() * 0.0  # keeps the graph, contributes nothing
    return (1.0 - inside[present]).pow(2).mean()
