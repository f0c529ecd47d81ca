"""Torch-free helpers for the base-model trainer: training (image, caption) pairs and prompt renders.

Pair ``i`` is a pure function of ``(seed, i)`` (its own numpy Generator); categories cycle with ``i % 4``
(equal shares); scenes and captions are training-split only (no held-out composition).
"""

from __future__ import annotations

import numpy as np

from dptune.shapesworld.grammar import CATEGORIES, IMAGE_SIZE, Prompt, PromptSpec, Scene, caption, parse_prompt
from dptune.shapesworld.render import render_scene, scene_for_spec
from dptune.shapesworld.splits import sample_spec, scene_is_id

_STREAM_TRAINING_PAIRS = 7  # seed stream distinct from the dataset splits (codes 0-2)


def training_scene(index: int, seed: int) -> tuple[PromptSpec, Scene]:
    """The training-split (spec, scene) at ``index`` of :func:`sample_training_pairs`."""
    rng = np.random.default_rng([seed, _STREAM_TRAINING_PAIRS, index])
    spec = sample_spec(rng, CATEGORIES[index % len(CATEGORIES)], "train")
    return spec, scene_for_spec(spec, rng, scene_is_id)


def sample_training_pairs(n: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """``n`` training images, uint8 (n, 32, 32, 3), and their captions; equal shares of the 4 categories."""
    if n < 0 or seed < 0:
        raise ValueError(f"n and seed must be >= 0, got n={n}, seed={seed}")
    pairs = [training_scene(i, seed) for i in range(n)]
    images = np.zeros((n, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)  # (n, S, S, 3)
    for i, (_, scene) in enumerate(pairs):
        images[i] = render_scene(scene)
    return images, [caption(spec) for spec, _ in pairs]


def render_prompt(prompt: Prompt | str, seed: int) -> np.ndarray:
    """uint8 (32, 32, 3): a random scene (seeded) that exactly satisfies the prompt (any split)."""
    if isinstance(prompt, str):
        prompt = parse_prompt(prompt)
    return render_scene(scene_for_spec(prompt.spec, np.random.default_rng(seed)))
