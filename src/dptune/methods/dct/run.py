"""``dptune train dct``: resolve the classifier and target, load the model, build the task, train."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from dptune.methods.dct.config import DCTTrainConfig, class_prompts, default_placement
from dptune.methods.dct.train import build_objective, build_task, fit, stop_reason
from dptune.training.loop import TrainResult


def train_dct(cfg: DCTTrainConfig, progress: bool = True) -> TrainResult:
    """Train the class token of ``cfg``; the token lands in ``<out>/final/tokens`` (best epoch: ``best/tokens``)."""
    from dptune.backbone import load_backbone
    from dptune.methods.context import sampling_defaults
    from dptune.methods.dct.classifiers import load_classifier, resolve_target

    classifier = load_classifier(cfg.classifier, cfg.device)  # fail on the classifier/target before loading SD
    target = resolve_target(classifier.labels, cfg.target)
    label = classifier.labels[target]
    placement = cfg.placement or default_placement(cfg.classifier)
    prompts, words = class_prompts(cfg.classifier, cfg.model, label, cfg.token, cfg.template, cfg.class_text,
                                   placement)
    if cfg.initializer is None:
        cfg = dataclasses.replace(cfg, initializer=words if cfg.classifier == "shapesworld-count" else "a")
    done = _finished(cfg)
    if done is not None:
        return done
    default_steps, default_guidance = sampling_defaults(cfg.model)
    steps = cfg.sample_steps or default_steps
    guidance = default_guidance if cfg.guidance is None else cfg.guidance
    backbone = load_backbone(cfg.model, device=cfg.device)
    objective = build_objective(backbone, classifier, cfg, target, steps, guidance).to(cfg.device)
    meta = {"classifier": cfg.classifier, "target": target, "label": label, "class_words": words,
            "placement": placement,
            "template": cfg.template, "prompts": prompts, "model": cfg.model, "initializer": cfg.initializer,
            "sample_steps": steps, "guidance": guidance, "grad_steps": cfg.grad_steps,
            "date": time.strftime("%Y-%m-%d", time.gmtime())}
    return fit(cfg, build_task(cfg, objective, prompts, meta), progress)


def _finished(cfg: DCTTrainConfig) -> TrainResult | None:
    """A run that already met the paper's early stop is not trained further on resume."""
    from dptune.training import checkpoint as ckpt
    from dptune.utils.io import load_json

    out = Path(cfg.out_dir)
    latest = ckpt.latest_checkpoint(out) if out.is_dir() else None
    if latest is None or not (out / "final" / "tokens").is_dir():
        return None
    state = load_json(latest / "state.json")
    history = state.get("history", [])
    if state["step"] >= cfg.steps or stop_reason(history, cfg.patience, cfg.stop_accuracy):
        return TrainResult(out, state["step"], history, state.get("best"), stopped_early=state["step"] < cfg.steps)
    return None


def trained_tokens(out_dir: str | Path) -> Path:
    """The token of a finished run: the best epoch's if there is one, else the final one."""
    out = Path(out_dir)
    best = out / "best" / "tokens"
    return best if best.is_dir() else out / "final" / "tokens"

