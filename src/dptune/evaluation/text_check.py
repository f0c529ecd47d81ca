"""Can the text encoder tell a caption from its hard negative? A diagnostic to run before blaming the U-Net.

DPT's matching score compares the adapter's queries with the pooled text embedding CLIP(y) (Sec. 3.1), and
the U-Net reads the token states through cross-attention. If an edit such as "left" -> "right" leaves both
(nearly) unchanged, then neither the adapter, nor LoRA on the U-Net (the paper's stage 2), nor self-correction
can prefer a caption over its edit: all they see of the text is the same. This module measures, per kind of
minimal edit, how far the embeddings of a caption and its edit lie apart.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
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


def shapesworld_edit_pairs(n_per_edit: int = 64, seed: int = 0, split: str = "id") -> dict[str, list]:
    """(caption, minimally edited caption) pairs of every hard-negative edit kind of ShapesWorld."""
    from dptune.shapesworld.grammar import CATEGORIES, caption
    from dptune.shapesworld.negatives import EDITS, hard_negative_candidates
    from dptune.shapesworld.splits import sample_spec

    rng = np.random.default_rng(seed)
    pairs: dict[str, list] = {e: [] for e in EDITS}
    for _ in range(200 * n_per_edit):  # bounded: every edit kind is reachable within a few draws
        if all(len(v) >= n_per_edit for v in pairs.values()):
            break
        spec = sample_spec(rng, CATEGORIES[int(rng.integers(len(CATEGORIES)))], split)
        cands = hard_negative_candidates(spec)
        edit, edited = cands[int(rng.integers(len(cands)))]
        if len(pairs[edit]) < n_per_edit:
            pairs[edit].append((caption(spec), caption(edited)))
    return pairs


def format_table(results: dict[str, dict]) -> str:
    lines = ["edit | n | pooled cos | near-identical | hidden rel. diff", "---|---|---|---|---"]
    for edit, r in results.items():
        lines.append(f"{edit} | {r['n']} | {r['pooled_cos']:.4f} | {100 * r['near_identical']:.0f}% | "
                     f"{r['hidden_rel_diff']:.4f}")
    return "\n".join(lines)
