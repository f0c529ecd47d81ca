"""ShapesWorld's evaluation hooks, registered by :mod:`dptune.shapesworld.plugin`: the ID/OOD prompt sets,
the exact-judge scorer, the caption edit pairs of the text check, and the generation-alignment validation of
stage-2 training (paper B.3.1 selects the stage-2 checkpoint by generation alignment)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dptune.data.eval_items import PromptRecord, PromptSet

SPLITS = ("id", "ood")


def shapesworld_set(split: str, n_per_category: int, seed: int = 0) -> PromptSet:
    """The ``shapesworld-<split>`` prompt set: ``n_per_category`` prompts of each category."""
    from dptune.shapesworld.splits import eval_prompts

    prompts = [
        PromptRecord(p.text, p.category, {"split": split}) for p in eval_prompts(split, n_per_category, seed)
    ]
    return PromptSet(
        f"shapesworld-{split}",
        prompts,
        f"dptune.shapesworld.eval_prompts({split!r}, {n_per_category}, seed={seed})",
        "shapesworld",
    )


def judge_scorer(images: np.ndarray, prompts: Sequence[PromptRecord]) -> list[dict[str, Any]]:
    """ShapesWorld exact judge: score 1/0 (GenEval-style rules), exact-scene flag, reason, found objects.

    ``images`` is uint8 (B, H, W, 3); each prompt needs only a ``text``.
    """
    from dptune.shapesworld.judge import judge_image

    out = []
    for img, p in zip(images, prompts, strict=True):
        r = judge_image(img, p.text)
        out.append(
            {
                "score": float(r.correct),
                "correct": bool(r.correct),
                "exact": float(r.exact_scene),
                "reason": r.reason,
                "found": [[o.colour, o.shape, list(o.box)] for o in r.found],
            }
        )
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


def generation_alignment(pipe, n_per_category: int, steps: int, guidance: float, seed: int = 0) -> dict:
    """Judge accuracy per category (``gen_<category>``, including ``gen_overall``) of images that ``pipe``
    (a diffusers StableDiffusionPipeline) generates from held-out in-distribution validation prompts."""
    import torch

    from dptune.shapesworld.judge import judge_batch, summarize
    from dptune.shapesworld.splits import eval_prompts

    prompts = eval_prompts("id", n_per_category, seed=1_000 + seed)  # not the seeds of the eval sets
    gens = [torch.Generator().manual_seed(seed * 100_000 + i) for i in range(len(prompts))]
    with torch.no_grad():
        images = pipe([p.text for p in prompts], generator=gens, num_inference_steps=steps,
                      guidance_scale=guidance, output_type="np").images  # (B, H, W, 3) floats in [0, 1]
    images_u8 = np.clip(np.rint(np.asarray(images, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)
    summary = summarize(judge_batch(images_u8, prompts))
    return {f"gen_{category}": stats["accuracy"] for category, stats in summary.items()}
