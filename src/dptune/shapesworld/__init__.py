"""ShapesWorld: a synthetic compositional world (32x32 shapes) with hard negatives, splits and an exact judge.

Modules: ``grammar`` (specs, captions, vocabulary), ``render`` (numpy renderer), ``splits`` (ID/OOD
compositions, eval prompts), ``negatives`` (hard/random negatives), ``refexp`` (referring expressions),
``pairs`` (trainer helpers), ``judge`` (GenEval-style exact judge), ``dataset`` (DPTDataset; imports torch,
loaded lazily), ``disc_items`` / ``eval_hooks`` (its ITM/REC item sets, prompt sets, judge scorer, text-check
pairs and training generation validation) and ``plugin`` (registers all of it with :mod:`dptune.plugins`);
``tiny_sd`` / ``train_base*`` / ``pretrain_text`` build the shipped model. Functions are named apart from
their modules (``judge_image``, ``render_scene``) so that ``dptune.shapesworld.judge`` and
``dptune.shapesworld.render`` stay importable as modules.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dptune.shapesworld.grammar import (
    CATEGORIES,
    COLOURS,
    IMAGE_SIZE,
    RELATIONS,
    SHAPES,
    Kind,
    Obj,
    Prompt,
    PromptSpec,
    Scene,
    caption,
    make_prompt,
    parse_prompt,
    vocabulary,
)
from dptune.shapesworld.judge import JudgeResult, judge_batch, judge_image, parse_image, summarize
from dptune.shapesworld.pairs import render_prompt, sample_training_pairs
from dptune.shapesworld.render import render_scene, scene_for_spec
from dptune.shapesworld.splits import eval_prompts, is_id_spec, scene_is_id

if TYPE_CHECKING:
    from dptune.shapesworld.dataset import SampleRecord, ShapesWorldConfig, ShapesWorldDataset

_LAZY = {"ShapesWorldDataset", "ShapesWorldConfig", "SampleRecord"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:  # the dataset needs torch; load it only when asked for
        from dptune.shapesworld import dataset

        return getattr(dataset, name)
    raise AttributeError(f"module 'dptune.shapesworld' has no attribute {name!r}")


__all__ = [
    "CATEGORIES", "COLOURS", "IMAGE_SIZE", "RELATIONS", "SHAPES", "JudgeResult", "Kind", "Obj", "Prompt",
    "PromptSpec", "SampleRecord", "Scene", "ShapesWorldConfig", "ShapesWorldDataset", "caption",
    "eval_prompts", "is_id_spec", "judge_batch", "judge_image", "make_prompt", "parse_image",
    "parse_prompt", "render_prompt", "render_scene", "sample_training_pairs", "scene_for_spec",
    "scene_is_id", "summarize", "vocabulary",
]
