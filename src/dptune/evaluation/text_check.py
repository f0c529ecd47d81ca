"""Can the text encoder tell a caption from its hard negative? A diagnostic to run before blaming the U-Net.

DPT's matching score compares the adapter's queries with the pooled text embedding CLIP(y) (Sec. 3.1), and
the U-Net reads the token states through cross-attention. If an edit such as "left" -> "right" leaves both
(nearly) unchanged, then neither the adapter, nor LoRA on the U-Net (the paper's stage 2), nor self-correction
can prefer a caption over its edit: all they see of the text is the same. This module measures, per kind of
minimal edit, how far the embeddings of a caption and its edit lie apart.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

# pooled cosine above this = the matching score cannot separate the two captions in practice
NEAR_IDENTICAL_COS = 0.999


@torch.no_grad()
def edit_separability(backbone, pairs_by_edit: dict[str, Sequence[tuple[str, str]]]) -> dict[str, dict]:
    """Per edit kind: how different the text encoder makes a caption and its edited version.

    Returns ``{edit: {n, pooled_cos (mean), near_identical (share with pooled cos > 0.999),
    hidden_rel_diff (mean ||H_a - H_b|| / ||H_a|| over the token states)}}``.
    """
    out = {}
    for edit, pairs in pairs_by_edit.items():
        if not pairs:
            continue
        a = backbone.encode_text([p for p, _ in pairs])
        b = backbone.encode_text([q for _, q in pairs])
        cos = F.cosine_similarity(a.pooled.float(), b.pooled.float(), dim=-1)  # (n,)
        ha, hb = a.hidden.float().flatten(1), b.hidden.float().flatten(1)  # (n, L*D)
        rel = (ha - hb).norm(dim=-1) / ha.norm(dim=-1).clamp_min(1e-12)  # (n,)
        out[edit] = {"n": len(pairs), "pooled_cos": cos.mean().item(),
                     "near_identical": (cos > NEAR_IDENTICAL_COS).float().mean().item(),
                     "hidden_rel_diff": rel.mean().item()}
    return out


def world_edit_pairs(name: str, n_per_edit: int = 64) -> dict[str, list]:
    """(caption, edited caption) pairs per edit kind from the world ``name`` -- a world's name or the alias of
    a model it ships -- for :func:`edit_separability`; ``{}`` when no registered world with edit pairs
    matches (e.g. a model folder or a hub id: there is nothing to check it against)."""
    from dptune.plugins import world_of_model, worlds

    world = worlds().get(name) or world_of_model(name)
    if world is None or world.edit_pairs is None:
        return {}
    return world.edit_pairs(n_per_edit)


def format_table(results: dict[str, dict]) -> str:
    lines = ["edit | n | pooled cos | near-identical | hidden rel. diff", "---|---|---|---|---"]
    for edit, r in results.items():
        lines.append(f"{edit} | {r['n']} | {r['pooled_cos']:.4f} | {100 * r['near_identical']:.0f}% | "
                     f"{r['hidden_rel_diff']:.4f}")
    return "\n".join(lines)
