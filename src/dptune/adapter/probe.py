"""``DPTProbe``: the discriminative model of DPT = U-Net features of the probed block(s) + the adapter.

Training (stages 1-2), evaluation (ITM / REC) and self-correction all score through this one object, so the
three always read the same features the same way (paper Eq. 1 then Eq. 2, then s(y, z) of Sec. 3.1).
The U-Net is registered as a submodule so LoRA parameters in it train and sync under DDP; the rest of the
backbone (VAE, text encoder) stays outside the module.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dptune.adapter.model import AdapterOutput, DiscriminativeAdapter
from dptune.backbone import SDBackbone, TextEmbeddings, check_blocks


class DPTProbe(nn.Module):
    def __init__(self, backbone: SDBackbone, adapter: DiscriminativeAdapter, blocks: Sequence[str] = ("mid",),
                 fuse: str = "sum", truncate: bool = True):
        super().__init__()
        self.blocks = check_blocks(backbone.unet, list(blocks))
        self.fuse = fuse
        self.truncate = truncate  # False only to measure what truncation saves (same features either way)
        object.__setattr__(self, "backbone", backbone)  # plain attribute: not a submodule
        self.unet = backbone.unet
        self.adapter = adapter
        expected = self.feature_channels(backbone, self.blocks, fuse)
        if adapter.config.in_channels != expected:
            raise ValueError(
                f"adapter was built for {adapter.config.in_channels} input channels but blocks {self.blocks} "
                f"(fuse={fuse!r}) give {expected}; build the adapter with in_channels={expected}"
            )
        if adapter.config.text_dim != backbone.text_dim:
            raise ValueError(
                f"adapter text_dim={adapter.config.text_dim} but this model's pooled text embedding has "
                f"{backbone.text_dim} dims; use an adapter trained for this model family"
            )

    @staticmethod
    def feature_channels(backbone: SDBackbone, blocks: Sequence[str], fuse: str = "sum") -> int:
        chans = [backbone.block_channels(b) for b in blocks]
        return sum(chans) if fuse == "concat" else chans[0]

    def features(self, z_t: torch.Tensor, t: torch.Tensor, text_hidden: torch.Tensor) -> torch.Tensor:
        """Truncated U-Net forward to the probed block(s) -> (B, C, h, w)."""
        return self.backbone.features(z_t, t, text_hidden, self.blocks, fuse=self.fuse, truncate=self.truncate)

    def forward(self, z_t: torch.Tensor, t: torch.Tensor, text_hidden: torch.Tensor) -> AdapterOutput:
        return self.adapter(self.features(z_t, t, text_hidden), t)

    def forward_with_noise(self, z_t: torch.Tensor, t: torch.Tensor, text_hidden: torch.Tensor):
        """Full U-Net forward: adapter output and the noise prediction (stage 2 with the MSE term)."""
        feats, eps = self.backbone.features_and_noise(z_t, t, text_hidden, self.blocks, fuse=self.fuse)
        return self.adapter(feats, t), eps

    def scores(self, z_t: torch.Tensor, t: torch.Tensor, text: TextEmbeddings) -> torch.Tensor:
        """s(y_i, z_i) for paired latents and texts -> (B,); the U-Net is conditioned on the scored text
        (as in DiffusionITM and the official code). Differentiable w.r.t. ``z_t``."""
        out = self(z_t, t, text.hidden)
        return self.adapter.match_score(out, text.pooled)

    @torch.no_grad()
    def encode_text(self, prompts: Sequence[str]) -> TextEmbeddings:
        return self.backbone.encode_text(list(prompts))

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone.encode_images(images)
