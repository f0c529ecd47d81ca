"""The dual encoder of text pretraining: CLIP's contrastive pair, plus an optional per-word tagging term.

The contrastive loss (symmetric InfoNCE with hard-negative captions, NegCLIP-style) only shapes the pooled EOS
state. The U-Net, though, cross-attends to *every* token state; a frozen encoder trained only at EOS can hand
it states where "yellow" and "triangle" are not separable, and a U-Net that never saw a yellow triangle then
cannot compose one (docs/shapesworld_v2.md). The tagging term asks each word's final state to say what the
word means -- its colour, shape, count or relation, with synonyms sharing a tag ("beneath" = "below",
"3" = "three") -- so the states stay compositional and paraphrases land on the same features.

The object term binds. A causal encoder reads "a circle that is red" left to right, so the word that
*completes* an object is "red" here and "circle" in "a red circle"; only that word's state can know the whole
object. The term asks it to name the object (colour x shape), whichever way round it was written, so a
wording the U-Net never saw still hands it the bound object on one token.
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


def object_tables(tokenizer) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(token id -> colour index or -1, token id -> shape index or -1, number of objects = colours x shapes)."""
    from dptune.shapesworld.grammar import COLOURS, SHAPES

    colour_of = torch.full((len(tokenizer),), -1, dtype=torch.long)
    shape_of = torch.full((len(tokenizer),), -1, dtype=torch.long)
    for i, colour in enumerate(COLOURS):
        colour_of[tokenizer(colour).input_ids[1]] = i
    for i, shape in enumerate(SHAPES):
        for word in (shape, f"{shape}s"):
            shape_of[tokenizer(word).input_ids[1]] = i
    return colour_of, shape_of, len(COLOURS) * len(SHAPES)


def object_targets(ids: torch.Tensor, colour_of: torch.Tensor, shape_of: torch.Tensor) -> torch.Tensor:
    """(N, L) object index (colour * n_shapes + shape) on the word that completes each colour-shape pair, in
    either order; IGNORE elsewhere. Walks each caption left to right as the causal encoder reads it."""
    n_shapes = int(shape_of.max()) + 1
    colours, shapes = colour_of[ids].tolist(), shape_of[ids].tolist()  # (N, L) each
    out = torch.full(ids.shape, IGNORE, dtype=torch.long)
    for row, (cs, ss) in enumerate(zip(colours, shapes, strict=True)):
        colour = shape = -1  # the open half of the current object
        for col, (c, s) in enumerate(zip(cs, ss, strict=True)):
            if c >= 0 and shape >= 0:  # post-nominal: "a circle that is red"
                out[row, col], shape = c * n_shapes + shape, -1
            elif s >= 0 and colour >= 0:  # pre-nominal: "a red circle"
                out[row, col], colour = colour * n_shapes + s, -1
            elif c >= 0:
                colour = c
            elif s >= 0:
                shape = s
    return out


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
    also a linear tagger on every word's final state (``tag_table`` from :func:`token_tag_table`); with
    ``object_weight`` > 0 a linear object head on the completing words (``objects`` from :func:`object_tables`)."""

    def __init__(self, cfg, text_encoder: nn.Module, tag_table: torch.Tensor | None = None, n_tags: int = 0,
                 objects: tuple | None = None):
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
        self.object_weight = float(getattr(cfg, "object_weight", 0.0))
        if self.object_weight > 0:
            if objects is None:
                raise ValueError("object_weight > 0 needs the object tables (object_tables(tokenizer))")
            colour_of, shape_of, n_objects = objects
            self.register_buffer("colour_of", colour_of, persistent=False)
            self.register_buffer("shape_of", shape_of, persistent=False)
            self.object_head = nn.Linear(cfg.model.text_hidden, n_objects)

    def encode_text(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One encoder pass: (N, E) unit joint embeddings of the EOS states (SD's pooled CLIP(y)) and the
        (N, L, D) final token states the word terms read."""
        out = self.text_encoder(ids)
        return F.normalize(self.text_proj(out.pooler_output), dim=-1), out.last_hidden_state

    def text(self, ids: torch.Tensor) -> torch.Tensor:
        return self.encode_text(ids)[0]  # (N, E)

    def image(self, pixels: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_encoder(pixels), dim=-1)  # (B, E)

    def _states(self, ids: torch.Tensor, hidden: torch.Tensor | None) -> torch.Tensor:
        """(N, L, D) final token states of ``ids``: ``hidden`` when the caller already ran the encoder."""
        return self.text_encoder(ids).last_hidden_state if hidden is None else hidden

    def tag_loss(self, ids: torch.Tensor, hidden: torch.Tensor | None = None) -> torch.Tensor:
        """Cross-entropy of each word's tag from its final state (BOS, EOS and padding ignored)."""
        hidden = self._states(ids, hidden)  # (N, L, D)
        logits = self.tagger(hidden)  # (N, L, T)
        return F.cross_entropy(logits.flatten(0, 1), self.tag_table[ids].flatten(), ignore_index=IGNORE)

    def object_loss(self, ids: torch.Tensor, hidden: torch.Tensor | None = None) -> torch.Tensor:
        """Cross-entropy of the object (colour x shape) from the state of the word that completes it."""
        hidden = self._states(ids, hidden)  # (N, L, D)
        logits = self.object_head(hidden)  # (N, L, O)
        target = object_targets(ids, self.colour_of, self.shape_of)  # (N, L)
        return F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=IGNORE)


def contrastive_loss(model: DualEncoder, pixels, ids, neg_ids):
    """Symmetric InfoNCE (CLIP); image -> text also ranks the image's own hard negatives (NegCLIP); plus
    ``model.tag_weight`` x the tagging loss and ``model.object_weight`` x the object loss of the captions when
    they are on."""
    b, k, length = neg_ids.shape
    img = model.image(pixels)  # (B, E)
    # one encoder pass serves the embeddings and the word terms (the captions are its first B rows)
    txt, states = model.encode_text(torch.cat([ids, neg_ids.reshape(b * k, length)]))  # (B + B*K, E), (.., L, D)
    hidden = states[:b]  # (B, L, D): the captions' token states
    scale = model.log_scale.clamp(max=float(np.log(100.0))).exp()
    target = torch.arange(b)
    i2t = scale * img @ txt.T  # (B, B + B*K): every caption and every hard negative of the batch
    t2i = scale * txt[:b] @ img.T  # (B, B)
    loss = 0.5 * (F.cross_entropy(i2t, target) + F.cross_entropy(t2i, target))
    if model.tag_weight > 0:
        loss = loss + model.tag_weight * model.tag_loss(ids, hidden)
    if model.object_weight > 0:
        loss = loss + model.object_weight * model.object_loss(ids, hidden)
    return loss
