"""The dual encoder of text pretraining: CLIP's contrastive pair, plus an optional per-word tagging term.

The contrastive loss (symmetric InfoNCE with hard-negative captions, NegCLIP-style) only shapes the pooled EOS
state. The U-Net, though, cross-attends to *every* token state; a frozen encoder trained only at EOS can hand
it states where "yellow" and "triangle" are not separable, and a U-Net that never saw a yellow triangle then
cannot compose one (docs/shapesworld_v2.md). The tagging term asks each word's final state to say what the
word means -- its colour, shape, count or relation, with synonyms sharing a tag ("beneath" = "below",
"3" = "three") -- so the states stay compositional and paraphrases land on the same features.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

IGNORE = -100  # cross_entropy's ignore_index: BOS, EOS and padding carry no tag


def word_tags() -> dict[str, str]:
    """Word -> semantic tag for every vocabulary word (function words share the tag 'other')."""
    from dptune.shapesworld.grammar import COLOURS, COUNT_WORDS, SHAPES, vocabulary

    tags = {w: "other" for w in vocabulary()}
    tags.update({c: f"colour:{c}" for c in COLOURS})
    tags.update({s: f"shape:{s}" for s in SHAPES})
    tags.update({f"{s}s": f"shape:{s}" for s in SHAPES})
    for n, word in COUNT_WORDS.items():
        tags[word] = tags[str(n)] = f"count:{n}"
    tags.update({w: "count:1" for w in ("one", "single")})
    relation = {"left": "left", "right": "right", "above": "above", "over": "above", "top": "above",
                "higher": "above", "below": "below", "under": "below", "beneath": "below", "lower": "below"}
    tags.update({w: f"relation:{r}" for w, r in relation.items()})
    return {w: t for w, t in tags.items() if w in set(vocabulary())}


def token_tag_table(tokenizer) -> tuple[torch.Tensor, list[str]]:
    """(vocab-size long tensor: token id -> tag index or IGNORE, tag names)."""
    tags = word_tags()
    names = sorted(set(tags.values()))
    table = torch.full((len(tokenizer),), IGNORE, dtype=torch.long)
    for word, tag in tags.items():
        ids = tokenizer(word).input_ids  # BOS, word, EOS: every vocabulary word is one token
        table[ids[1]] = names.index(tag)
    return table, names


def build_image_encoder(embed_dim: int, image_size: int = 32):
    """A small CNN whose flattened map keeps *where* things are (a global pool would lose left/right)."""
    side = image_size // 4
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.GELU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1),
        nn.GELU(),
        nn.Conv2d(64, 64, 3, stride=2, padding=1),
        nn.GELU(),  # (B, 64, S/4, S/4)
        nn.Flatten(),
        nn.Linear(64 * side * side, 256),
        nn.GELU(),
        nn.Linear(256, embed_dim),
    )


class DualEncoder(nn.Module):
    """Text encoder + projection and image encoder, with CLIP's learnable temperature; with ``tag_weight`` > 0
    also a linear tagger on every word's final state (``tag_table`` from :func:`token_tag_table`)."""

    def __init__(self, cfg, text_encoder: nn.Module, tag_table: torch.Tensor | None = None, n_tags: int = 0):
        super().__init__()
        self.text_encoder = text_encoder
        self.text_proj = nn.Linear(cfg.model.text_hidden, cfg.embed_dim, bias=False)
        self.image_encoder = build_image_encoder(cfg.embed_dim, cfg.model.image_size)
        self.log_scale = nn.Parameter(torch.tensor(float(np.log(1 / 0.07))))
        self.tag_weight = float(getattr(cfg, "tag_weight", 0.0))
        if self.tag_weight > 0:
            if tag_table is None:
                raise ValueError("tag_weight > 0 needs the token tag table (token_tag_table(tokenizer))")
            self.register_buffer("tag_table", tag_table, persistent=False)
            self.tagger = nn.Linear(cfg.model.text_hidden, n_tags)

    def text(self, ids: torch.Tensor) -> torch.Tensor:
        pooled = self.text_encoder(ids).pooler_output  # (N, D): the EOS state, SD's pooled CLIP(y)
        return F.normalize(self.text_proj(pooled), dim=-1)  # (N, E)

    def image(self, pixels: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_encoder(pixels), dim=-1)  # (B, E)

    def tag_loss(self, ids: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of each word's tag from its final state (BOS, EOS and padding ignored)."""
        hidden = self.text_encoder(ids).last_hidden_state  # (N, L, D)
        logits = self.tagger(hidden)  # (N, L, T)
        return F.cross_entropy(logits.flatten(0, 1), self.tag_table[ids].flatten(), ignore_index=IGNORE)


def contrastive_loss(model: DualEncoder, pixels, ids, neg_ids):
    """Symmetric InfoNCE (CLIP); image -> text also ranks the image's own hard negatives (NegCLIP); plus
    ``model.tag_weight`` x the tagging loss of the captions when it is on."""
    b, k, length = neg_ids.shape
    img = model.image(pixels)  # (B, E)
    txt = model.text(torch.cat([ids, neg_ids.reshape(b * k, length)]))  # (B + B*K, E)
    scale = model.log_scale.clamp(max=float(np.log(100.0))).exp()
    target = torch.arange(b)
    i2t = scale * img @ txt.T  # (B, B + B*K): every caption and every hard negative of the batch
    t2i = scale * txt[:b] @ img.T  # (B, B)
    loss = 0.5 * (F.cross_entropy(i2t, target) + F.cross_entropy(t2i, target))
    if model.tag_weight > 0:
        loss = loss + model.tag_weight * model.tag_loss(ids)
    return loss
