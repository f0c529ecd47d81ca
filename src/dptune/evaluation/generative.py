"""Generative evaluation: generate k images per prompt with fixed seeds, score every image, aggregate.

Seeds: image j of prompt i gets ``seed = base_seed + i * k + j``, so every method sees the same initial noise
for the same (prompt, j) -- differences between methods are differences of the methods, and image grids line
up by seed. The generator is injected: ``generate(prompts, seeds) -> (B, H, W, 3)`` floats in [0, 1] (the
``DPTPipeline`` output), which keeps this module independent of how images are made.

Scorers map a batch of uint8 images and their :class:`PromptRecord` s to one dict per image holding at least
``score``; every scorer's per-image dicts (verdicts, reasons) are kept in the results. Aggregates: mean and a
bootstrap 95% CI over prompts, per category and overall (:mod:`dptune.evaluation.stats`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dptune.evaluation.prompt_sets import PromptRecord, PromptSet
from dptune.evaluation.stats import DEFAULT_LEVEL, DEFAULT_N_BOOT, mean_ci, per_prompt_means

Generate = Callable[[list[str], list[int]], np.ndarray]
Scorer = Callable[[np.ndarray, Sequence[PromptRecord]], list[dict[str, Any]]]
SUMMARISED_FIELDS = ("score", "exact", "itc")  # numeric per-image fields that get a mean and CI


def image_seed(base_seed: int, prompt_index: int, images_per_prompt: int, j: int) -> int:
    """Seed of image ``j`` of prompt ``prompt_index``: identical across methods."""
    return int(base_seed) + int(prompt_index) * int(images_per_prompt) + int(j)


def to_uint8(images: Any) -> np.ndarray:
    """(B, H, W, 3) floats in [0, 1] (or uint8) -> uint8 (B, H, W, 3)."""
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(
            f"generate() must return (B, H, W, 3) images, got shape {arr.shape}; use "
            "output_type='np' (channels last)"
        )
    if arr.dtype == np.uint8:
        return arr
    return np.clip(np.rint(arr.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)


def _save_png(image: np.ndarray, path: Path) -> None:
    from PIL import Image

    from dptune.utils.io import atomic_write

    atomic_write(path, lambda tmp: Image.fromarray(image).save(tmp, format="PNG"))


def generate_and_score(
    pset: PromptSet,
    generate: Generate,
    scorers: dict[str, Scorer],
    images_per_prompt: int,
    base_seed: int = 0,
    batch_size: int = 16,
    image_dir: Path | None = None,
    rel_root: Path | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """One record per generated image: prompt, category, seed, PNG path (relative to ``rel_root``), scores."""
    if images_per_prompt < 1 or batch_size < 1:
        raise ValueError(
            f"images_per_prompt and batch_size must be >= 1, got {images_per_prompt}, {batch_size}"
        )
    jobs = [
        (i, j, image_seed(base_seed, i, images_per_prompt, j))
        for i in range(len(pset.prompts))
        for j in range(images_per_prompt)
    ]
    records: list[dict[str, Any]] = []
    starts = range(0, len(jobs), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=pset.name, leave=False)
    for a in starts:
        chunk = jobs[a : a + batch_size]
        prompts = [pset.prompts[i] for i, _, _ in chunk]
        images = to_uint8(generate([p.text for p in prompts], [s for _, _, s in chunk]))
        if len(images) != len(chunk):
            raise ValueError(f"generate() returned {len(images)} images for {len(chunk)} prompts")
        verdicts = {name: scorer(images, prompts) for name, scorer in scorers.items()}
        for k, ((i, j, seed), p) in enumerate(zip(chunk, prompts, strict=True)):
            rec = {
                "prompt_index": i,
                "prompt": p.text,
                "category": p.category,
                "j": j,
                "seed": seed,
                "metrics": {name: v[k] for name, v in verdicts.items()},
            }
            if image_dir is not None:
                path = image_dir / f"p{i:04d}_j{j}_s{seed}.png"
                _save_png(images[k], path)
                rec["file"] = str(path.relative_to(rel_root)) if rel_root else str(path)
            records.append(rec)
    return records


def summarize_records(
    records: Sequence[dict[str, Any]],
    n_boot: int = DEFAULT_N_BOOT,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
) -> dict[str, dict[str, dict[str, float]]]:
    """{metric[.field]: {category: ci, 'overall': ci, 'category_mean': ci}} with CIs over prompts.

    ``overall`` pools all prompts (stratified resampling by category); ``category_mean`` is the unweighted
    mean of the category means (GenEval's overall score); they agree when categories have equal sizes.
    """
    if not records:
        return {}
    out: dict[str, dict[str, dict[str, float]]] = {}
    for metric in records[0]["metrics"]:
        for fld in SUMMARISED_FIELDS:
            if fld not in records[0]["metrics"][metric]:
                continue
            key = metric if fld == "score" else f"{metric}.{fld}"
            values = [float(r["metrics"][metric][fld]) for r in records]
            ids, means = per_prompt_means(values, [r["prompt_index"] for r in records])
            cat_of = {r["prompt_index"]: r["category"] for r in records}
            cats = [cat_of[i] for i in ids]
            block = {
                c: mean_ci(means[[x == c for x in cats]], None, n_boot, level, seed)
                for c in dict.fromkeys(cats)
            }
            block["overall"] = mean_ci(means, cats, n_boot, level, seed)
            block["category_mean"] = mean_ci(means, cats, n_boot, level, seed, mean_of_strata=True)
            out[key] = block
    return out


def evaluate_prompt_set(
    pset: PromptSet,
    generate: Generate,
    scorers: dict[str, Scorer],
    images_per_prompt: int,
    base_seed: int = 0,
    batch_size: int = 16,
    image_dir: Path | None = None,
    rel_root: Path | None = None,
    n_boot: int = DEFAULT_N_BOOT,
    level: float = DEFAULT_LEVEL,
    settings: dict | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Generate, score and summarise one prompt set -> a JSON-able result (see docs/evaluation.md)."""
    records = generate_and_score(
        pset, generate, scorers, images_per_prompt, base_seed, batch_size, image_dir, rel_root, progress
    )
    return {
        "name": pset.name,
        "kind": pset.kind,
        "source": pset.source,
        "n_prompts": len(pset.prompts),
        "images_per_prompt": images_per_prompt,
        "base_seed": base_seed,
        "seed_rule": "seed = base_seed + prompt_index * images_per_prompt + j",
        "settings": dict(settings or {}),
        "ci": {"method": "percentile bootstrap over prompts", "level": level, "n_boot": n_boot},
        "summary": summarize_records(records, n_boot, level),
        "images": records,
    }
