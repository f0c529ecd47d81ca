"""Evaluation suite of DPT (paper Sec. 4): discriminative (ITM, REC) and generative (judge, CLIP, BLIP, FID,
IS, GenEval rules) metrics, prompt sets, multi-method comparison reports and ``dptune eval``.

>>> from dptune.evaluation import EvalConfig, evaluate_methods
>>> from dptune.methods import parse_method
>>> weights = {"adapter": "run/final/adapter", "lora": "run/final/lora"}
>>> runs = [parse_method(m, weights) for m in ("base", "dpt", "dpt+sc:eta=0.5")]
>>> results = evaluate_methods(runs, EvalConfig(out="runs/eval", discriminative=True))

Submodules are imported on first use (torch only where needed), so ``dptune --help`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    # suite
    "EvalConfig": "config",
    "evaluate_methods": "suite",
    # discriminative
    "ITMItem": "disc_items",
    "RECItem": "disc_items",
    "world_items": "disc_items",
    "load_hn_coco_items": "disc_items",
    "load_refcoco_items": "disc_items",
    "evaluate_itm": "discriminative",
    "evaluate_rec": "discriminative",
    "matching_credit": "discriminative",
    "rec_hits": "discriminative",
    # generative
    "evaluate_prompt_set": "generative",
    "generate_and_score": "generative",
    "image_seed": "generative",
    "summarize_records": "generative",
    "PromptRecord": "prompt_sets",
    "PromptSet": "prompt_sets",
    "load_prompt_set": "prompt_sets",
    # metrics
    "CLIPScorer": "metrics_clip",
    "BLIPScorer": "metrics_blip",
    "fid_score": "metrics_fid",
    "inception_score": "metrics_fid",
    "frechet_distance": "metrics_fid",
    "MissingWeightsError": "metrics_common",
    "MissingDependencyError": "metrics_common",
    "Detection": "geneval",
    "geneval_verdict": "geneval",
    "geneval_score": "geneval",
    # statistics and reports
    "mean_ci": "stats",
    "paired_difference_ci": "stats",
    "write_report": "report",
    "merge_results": "report",
    "load_results": "report",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"dptune.evaluation.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'dptune.evaluation' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
