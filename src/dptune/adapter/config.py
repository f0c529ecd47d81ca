"""Configuration of the discriminative adapter (paper Sec. 3.1, Appendix B.3.2)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from dptune.utils.config import field

POS_EMBEDDINGS = ("sine", "learned")


@dataclass
class AdapterConfig:
    """Shape and initialisation of :class:`~dptune.adapter.model.DiscriminativeAdapter`.

    Defaults follow Appendix B.3.2: 1 encoder + 1 decoder layer, d = 256, 8 heads, FFN 2048, 110 queries of
    which the first 10 do matching, temperature initialised to 0.07; dropout 0.1 and post-norm as DETR and
    the official code.

    Position embedding: the paper says "learnable position embeddings", the official code uses a fixed,
    normalised 2-D sine embedding. The default is ``"sine"`` because (a) it is what produced the published
    numbers, (b) it has no parameters and works unchanged for every block size (the mid block is 8x8 at 512
    px, up-blocks up to 64x64, tiny test U-Nets 2x2) and (c) being normalised to [0, 2 pi] it keeps a
    probe trained at one resolution meaningful at another. ``"learned"`` follows the paper's wording: a
    ``max_grid x max_grid`` table bilinearly resized to the feature size (so it also works for any size,
    but it adds d * max_grid^2 parameters, 1 M at the defaults).
    """

    in_channels: int = field(help="channels of the probed U-Net block's feature map (1280 for the SD mid block)")
    text_dim: int = field(
        help="dimension of the backbone's pooled text embedding CLIP(y) (1024 for SD 2.x, 768 for SD 1.x)"
    )
    d_model: int = field(256, help="hidden size of the adapter transformer")
    heads: int = field(8, help="attention heads (must divide d_model)")
    ffn: int = field(2048, help="feed-forward hidden size of each transformer layer")
    enc_layers: int = field(1, help="transformer encoder layers")
    dec_layers: int = field(1, help="transformer decoder layers")
    dropout: float = field(0.1, help="dropout inside the transformer layers")
    num_queries: int = field(110, help="total learnable queries N (matching + grounding)")
    num_match_queries: int = field(10, help="the first M queries used for image-text matching (M < N)")
    pos_embedding: str = field("sine", help="position embedding: 'sine' (fixed 2-D, default) or 'learned'")
    max_grid: int = field(64, help="side of the learned position table (resized to the feature size)")
    time_mlp_hidden: int = field(0, help="hidden size of the timestep-embedding MLP; 0 = 4 x d_model")
    box_mlp_layers: int = field(3, help="layers of the box-regression MLP (DETR uses 3)")
    init_temperature: float = field(0.07, help="initial contrastive temperature tau (logit scale = 1/tau)")
    max_logit_scale: float = field(100.0, help="upper clamp of the logit scale 1/tau (CLIP uses 100)")

    def __post_init__(self) -> None:
        for name in ("in_channels", "text_dim", "d_model", "heads", "ffn", "enc_layers", "dec_layers"):
            _positive_int(self, name)
        for name in ("num_queries", "num_match_queries", "max_grid", "box_mlp_layers"):
            _positive_int(self, name)
        if self.d_model % self.heads:
            raise ValueError(f"AdapterConfig: heads={self.heads} must divide d_model={self.d_model}")
        if self.d_model % 4:
            raise ValueError(f"AdapterConfig: d_model={self.d_model} must be a multiple of 4 (2-D position codes)")
        if self.num_match_queries >= self.num_queries:
            raise ValueError(
                f"AdapterConfig: num_match_queries={self.num_match_queries} must be smaller than "
                f"num_queries={self.num_queries} (the rest are grounding queries)"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"AdapterConfig: dropout must be in [0, 1); got {self.dropout}")
        if self.pos_embedding not in POS_EMBEDDINGS:
            raise ValueError(
                f"AdapterConfig: pos_embedding must be one of {POS_EMBEDDINGS}; got {self.pos_embedding!r}"
            )
        if not isinstance(self.time_mlp_hidden, int) or self.time_mlp_hidden < 0:
            raise ValueError(f"AdapterConfig: time_mlp_hidden must be an int >= 0; got {self.time_mlp_hidden!r}")
        if not self.init_temperature > 0:
            raise ValueError(f"AdapterConfig: init_temperature must be > 0; got {self.init_temperature}")
        if 1.0 / self.init_temperature > self.max_logit_scale:
            raise ValueError(
                f"AdapterConfig: 1/init_temperature = {1 / self.init_temperature:.3g} exceeds max_logit_scale="
                f"{self.max_logit_scale}; raise max_logit_scale or the temperature"
            )

    @property
    def num_ground_queries(self) -> int:
        """N - M queries used for grounding."""
        return self.num_queries - self.num_match_queries

    @property
    def time_hidden(self) -> int:
        return self.time_mlp_hidden or 4 * self.d_model

    @property
    def init_logit_scale_log(self) -> float:
        """Initial value of the learnable parameter log(1 / tau)."""
        return math.log(1.0 / self.init_temperature)


def _positive_int(cfg: AdapterConfig, name: str) -> None:
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"AdapterConfig: {name} must be a positive integer; got {value!r}")
