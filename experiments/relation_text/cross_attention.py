"""Cross-attention maps of a diffusers U-Net, captured by forward hooks (for the grounding term of
``attention.py``; used only by the relation-text experiment in this folder).

Every ``attn2`` (the text cross-attention of a transformer block) projects the image tokens to queries and
the text token states to keys; the map of text token j over the image is ``softmax_j(q k^T * scale)``.
Hooks on ``to_q`` / ``to_k`` record those two projections and :meth:`CrossAttention.maps` recomputes the
softmax from them, so capture works whatever attention processor (SDPA, xformers, a LoRA-wrapped projection)
runs the layer, and gradients flow through the recorded tensors. No attention mask is applied: Stable
Diffusion's text cross-attention uses none.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class CrossAttention:
    """Queries and keys recorded during one forward inside :func:`capture_cross_attention`."""

    layers: dict[str, nn.Module]
    queries: dict[str, torch.Tensor] = field(default_factory=dict)
    keys: dict[str, torch.Tensor] = field(default_factory=dict)

    def clear(self) -> None:
        self.queries.clear()
        self.keys.clear()

    def maps(self, side: int | None = None) -> dict[str, torch.Tensor]:
        """Head-averaged attention probabilities per layer, (B, N, L) with N = h*w image tokens and L text
        tokens (each row sums to 1 over the text tokens); only layers whose map is ``side`` x ``side`` when
        given. Raises when nothing was recorded (the U-Net did not run inside the context)."""
        if not self.queries:
            raise RuntimeError("no cross-attention recorded: call the U-Net inside capture_cross_attention()")
        out = {}
        for name, q in self.queries.items():
            if side is not None and q.shape[1] != side * side:
                continue
            attn, k = self.layers[name], self.keys[name]
            b, n, _ = q.shape
            q = q.view(b, n, attn.heads, -1).transpose(1, 2)  # (B, heads, N, d)
            k = k.view(b, k.shape[1], attn.heads, -1).transpose(1, 2)  # (B, heads, L, d)
            probs = (q @ k.transpose(-1, -2) * attn.scale).softmax(dim=-1)  # (B, heads, N, L)
            out[name] = probs.mean(dim=1)
        return out


def cross_attention_layers(unet: nn.Module) -> dict[str, nn.Module]:
    """The text cross-attention modules (``...attn2``) of a diffusers U-Net, by module name."""
    layers = {n: m for n, m in unet.named_modules() if n.endswith("attn2") and hasattr(m, "to_k")}
    if not layers:
        raise ValueError("this U-Net has no text cross-attention layers (no '*.attn2' modules)")
    return layers


@contextlib.contextmanager
def capture_cross_attention(unet: nn.Module) -> Iterator[CrossAttention]:
    """Record every cross-attention layer's queries and keys while the body runs; hooks are removed on exit,
    also when the body raises. Install it after LoRA is added, so the hooks see the LoRA-wrapped projections."""
    store = CrossAttention(layers=cross_attention_layers(unet))
    handles = []

    def recorder(target: dict, name: str):
        def hook(module, args, out):
            target[name] = out

        return hook

    try:
        for name, attn in store.layers.items():
            handles.append(attn.to_q.register_forward_hook(recorder(store.queries, name)))
            handles.append(attn.to_k.register_forward_hook(recorder(store.keys, name)))
        yield store
    finally:
        for h in handles:
            h.remove()
