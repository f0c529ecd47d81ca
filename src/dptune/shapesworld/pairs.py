"""Torch-free helpers for the base-model trainer: training (image, caption) pairs and prompt renders.

Pair ``i`` is a pure function of ``(seed, i)`` (its own numpy Generator); categories cycle with ``i % 4``
(equal shares). U-Net training pairs are training-split scenes (no held-out composition) captioned in one of
the training wordings; text-pretraining pairs cover *every* composition and wording, as CLIP read far more
than SD's U-Net was trained on.
"""

from __future__ import annotations

import numpy as np

from dptune.shapesworld.grammar import (
    CATEGORIES,
    IMAGE_SIZE,
    N_WORDINGS,
    TRAIN_WORDINGS,
    Prompt,
    PromptSpec,
    Scene,
    caption,
    parse_prompt,
    wording,
)
from dptune.shapesworld.render import render_scene, scene_for_spec
from dptune.shapesworld.splits import all_specs, sample_spec, scene_is_id

_STREAM_TRAINING_PAIRS = 7  # seed stream distinct from the dataset splits (codes 0-2)
_STREAM_PRETRAINING_PAIRS = 8


def training_scene(index: int, seed: int) -> tuple[PromptSpec, Scene]:
    """The training-split (spec, scene) at ``index`` of :func:`sample_training_pairs`."""
    rng = np.random.default_rng([seed, _STREAM_TRAINING_PAIRS, index])
    spec = sample_spec(rng, CATEGORIES[index % len(CATEGORIES)], "train")
    return spec, scene_for_spec(spec, rng, scene_is_id)


def training_wording(index: int, seed: int) -> int:
    """The training wording of pair ``index``: one of ``TRAIN_WORDINGS``, a pure function of (seed, index)."""
    rng = np.random.default_rng([seed, _STREAM_TRAINING_PAIRS, index, 1])  # apart from the scene's stream
    return TRAIN_WORDINGS[int(rng.integers(len(TRAIN_WORDINGS)))]


def pretraining_scene(index: int, seed: int) -> tuple[PromptSpec, Scene, int]:
    """(spec, scene, wording) ``index`` of the text encoder's pretraining stream: any composition (ID or
    held-out) in any wording (training or paraphrase)."""
    rng = np.random.default_rng([seed, _STREAM_PRETRAINING_PAIRS, index])
    specs = all_specs(CATEGORIES[index % len(CATEGORIES)])
    spec = specs[int(rng.integers(len(specs)))]
    return spec, scene_for_spec(spec, rng), int(rng.integers(N_WORDINGS))


def sample_training_pairs(n: int, seed: int, wordings: bool = False) -> tuple[np.ndarray, list[str]]:
    """``n`` training images, uint8 (n, 32, 32, 3), and their captions; equal shares of the 4 categories.
    ``wordings``: caption each in one of the training wordings (False: the canonical caption only)."""
    if n < 0 or seed < 0:
        raise ValueError(f"n and seed must be >= 0, got n={n}, seed={seed}")
    pairs = [training_scene(i, seed) for i in range(n)]
    images = np.zeros((n, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)  # (n, S, S, 3)
    for i, (_, scene) in enumerate(pairs):
        images[i] = render_scene(scene)
    if not wordings:
        return images, [caption(spec) for spec, _ in pairs]
    return images, [wording(spec, training_wording(i, seed)) for i, (spec, _) in enumerate(pairs)]


def render_prompt(prompt: Prompt | str, seed: int) -> np.ndarray:
    """uint8 (32, 32, 3): a random scene (seeded) that exactly satisfies the prompt (any split)."""
    if isinstance(prompt, str):
        prompt = parse_prompt(prompt)
    return render_scene(scene_for_spec(prompt.spec, np.random.default_rng(seed)))
