"""The discriminative adapter, paper Sec. 3.1, Eq. 2: Q* = f(F~; W_a, Q) = Dec(Enc(F~), Q)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dptune.adapter.config import AdapterConfig
from dptune.adapter.heads import MLP, GroundingHeads, max_cosine
from dptune.adapter.position import LearnedPosition2D, TimestepEmbedding, sine_position_2d


@dataclass
class AdapterOutput:
    """Everything the adapter predicts for one batch of feature maps."""

    queries: torch.Tensor  # (B, N, d) decoded queries Q*
    match_emb: torch.Tensor  # (B, M, Dt) h_i = g(q*_i; W_m), i <= M
    logits_p: torch.Tensor  # (B, N-M) grounding-probability logits (p_j = sigmoid)
    boxes: torch.Tensor  # (B, N-M, 4) normalised cxcywh
    obj_emb: torch.Tensor  # (B, N-M, Dt) o_j = g(q*_j; W_s)
    logit_scale: torch.Tensor  # () 1/tau, clamped to max_logit_scale

    def select(self, index: slice | torch.Tensor) -> AdapterOutput:
        """Rows ``index`` of every batched field (e.g. the REC part of a forward that batched several passes)."""
        batched = {k: v[index] for k, v in vars(self).items() if k != "logit_scale"}
        return AdapterOutput(**batched, logit_scale=self.logit_scale)


class DiscriminativeAdapter(nn.Module):
    """DETR-style probe on a U-Net feature map (Sec. 3.1).

    1x1 conv to ``d_model`` -> + position embedding + timestep embedding at every location -> flatten ->
    post-norm transformer encoder -> decoder over N learnable queries -> heads: the first M queries go
    through the matching projection g(.; W_m) (MLP d -> d -> text_dim), the other N - M through the
    grounding heads (probability, box, semantic). ``logit_scale`` = log(1/tau) is a learnable parameter.
    """

    def __init__(self, config: AdapterConfig) -> None:
        super().__init__()
        c = config
        self.config = c
        self.input_proj = nn.Conv2d(c.in_channels, c.d_model, kernel_size=1)
        self.pos_embed = LearnedPosition2D(c.d_model, c.max_grid) if c.pos_embedding == "learned" else None
        self.time_embed = TimestepEmbedding(c.d_model, c.time_hidden)
        enc_layer = nn.TransformerEncoderLayer(c.d_model, c.heads, c.ffn, c.dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(enc_layer, c.enc_layers, enable_nested_tensor=False)
        dec_layer = nn.TransformerDecoderLayer(c.d_model, c.heads, c.ffn, c.dropout, batch_first=True)
        self.decoder = nn.TransformerDecoder(dec_layer, c.dec_layers, norm=nn.LayerNorm(c.d_model))
        self.queries = nn.Parameter(torch.randn(c.num_queries, c.d_model))  # (N, d), randomly initialised
        self.match_head = MLP(c.d_model, c.d_model, c.text_dim, 2)
        self.ground_heads = GroundingHeads(c.d_model, c.text_dim, c.box_mlp_layers)
        self.logit_scale = nn.Parameter(torch.tensor(c.init_logit_scale_log))
        self._init_transformer()

    def _init_transformer(self) -> None:
        # Xavier on the attention / FFN matrices, as DETR (nn.Transformer does this, its parts alone do not).
        for module in (self.encoder, self.decoder):
            for p in module.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)

    def _check_inputs(self, features: torch.Tensor, timesteps: torch.Tensor | int) -> torch.Tensor:
        c = self.config
        if features.ndim != 4 or features.shape[1] != c.in_channels:
            raise ValueError(
                f"adapter expects features (B, {c.in_channels}, h, w) from the block it was built for; got "
                f"shape {tuple(features.shape)}. Probe the same block or build an adapter with "
                f"in_channels={features.shape[1] if features.ndim == 4 else '?'}"
            )
        t = torch.as_tensor(timesteps, device=features.device)
        if t.ndim == 0:
            t = t.expand(features.shape[0])  # one timestep for the whole batch
        if t.shape != (features.shape[0],):
            raise ValueError(f"timesteps must be a scalar or shape ({features.shape[0]},); got {tuple(t.shape)}")
        return t

    def position(self, h: int, w: int, device, dtype) -> torch.Tensor:
        """Position embedding for an h x w grid -> (h*w, d)."""
        if self.pos_embed is not None:
            return self.pos_embed(h, w).to(dtype)
        return sine_position_2d(h, w, self.config.d_model, device=device).to(dtype)

    def encode(self, features: torch.Tensor, timesteps: torch.Tensor | int) -> torch.Tensor:
        """Enc(F~): projected, position- and time-embedded, flattened tokens -> (B, h*w, d)."""
        t = self._check_inputs(features, timesteps)
        x = self.input_proj(features)  # (B, d, h, w)
        bsz, d, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)  # (B, h*w, d)
        tokens = tokens + self.position(h, w, x.device, x.dtype)[None] + self.time_embed(t).to(x.dtype)[:, None]
        return self.encoder(tokens)  # (B, h*w, d)

    def forward(self, features: torch.Tensor, timesteps: torch.Tensor | int) -> AdapterOutput:
        """``features`` (B, C, h, w) from the probed U-Net block at ``timesteps`` (B,) -> heads' outputs."""
        memory = self.encode(features, timesteps)  # (B, h*w, d)
        tgt = self.queries.to(memory.dtype)[None].expand(memory.shape[0], -1, -1)  # (B, N, d)
        q = self.decoder(tgt, memory)  # (B, N, d)
        m = self.config.num_match_queries
        logits_p, boxes, obj_emb = self.ground_heads(q[:, m:])  # (B, N-M), (B, N-M, 4), (B, N-M, Dt)
        return AdapterOutput(
            queries=q,
            match_emb=self.match_head(q[:, :m]),  # (B, M, Dt)
            logits_p=logits_p,
            boxes=boxes,
            obj_emb=obj_emb,
            logit_scale=self.scale(),
        )

    def scale(self) -> torch.Tensor:
        """1 / tau = exp(logit_scale), clamped at ``max_logit_scale`` (CLIP's trick against blow-up)."""
        return self.logit_scale.exp().clamp(max=self.config.max_logit_scale)

    def match_score(self, out_or_match_emb: AdapterOutput | torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
        """s(y, z) = max_i cos(CLIP(y), h_i): text (B, Dt) -> (B,), or (B, K, Dt) -> (B, K)."""
        emb = out_or_match_emb.match_emb if isinstance(out_or_match_emb, AdapterOutput) else out_or_match_emb
        return max_cosine(emb, text_emb)

    def score(self, features: torch.Tensor, timesteps: torch.Tensor | int, text_pooled: torch.Tensor) -> torch.Tensor:
        """Convenience: forward + :meth:`match_score` -> (B,) (or (B, K)); differentiable w.r.t. features."""
        return self.match_score(self(features, timesteps), text_pooled)


PARTS = {
    "input_proj": ("input_proj",),
    "embeddings": ("pos_embed", "time_embed"),
    "encoder": ("encoder",),
    "decoder": ("decoder",),
    "queries": ("queries",),
    "heads": ("match_head", "ground_heads", "logit_scale"),
}


def parameter_counts(adapter: DiscriminativeAdapter) -> dict[str, int]:
    """Trainable parameters by part (input_proj, embeddings, encoder, decoder, queries, heads) and total."""
    counts = dict.fromkeys(PARTS, 0)
    for name, p in adapter.named_parameters():
        top = name.split(".")[0]
        part = next(k for k, tops in PARTS.items() if top in tops)
        counts[part] += p.numel()
    counts["total"] = sum(p.numel() for p in adapter.parameters())
    return counts
