"""DCT's demo hook: a count-3 class token on the shipped ShapesWorld SD, and the judge's accuracy on count-3
prompts before (base) and after (dct) on evaluation seeds that training never drew.

Budget: about two minutes on 2 cores (the demo's +15%); ``setup.quick`` trains two steps for CI.
"""

from __future__ import annotations

from pathlib import Path

from dptune.methods.registry import DemoSetup

TARGET = 3
DEMO_TRAIN = dict(steps=12, batch_size=8, grad_accum=2, grad_steps=3, lr=5e-3, patience=12)  # <= 12 epochs x 16 images
QUICK_TRAIN = dict(steps=2, batch_size=2, grad_accum=1, grad_steps=1, patience=15, sample_steps=5)
SEEDS_PER_PROMPT, QUICK_SEEDS = 6, 1
QUICK_SAMPLE_STEPS = 5  # quick (CI) evaluation samples with 5 DDIM steps


def train_config(setup: DemoSetup):
    from dptune.methods.dct.config import DCTTrainConfig

    budget = QUICK_TRAIN if setup.quick else DEMO_TRAIN
    return DCTTrainConfig(out_dir=str(Path(setup.out_dir) / "dct" / "train"), model=setup.model,
                          classifier="shapesworld-count", target=str(TARGET), seed=setup.seed,
                          checkpoint_every=1000, stop_accuracy=0.95, **budget)


def run_demo_hook(setup: DemoSetup) -> Path:
    """Train (or resume), measure base vs dct on count-3 prompts, write ``dct/target_accuracy.json``."""
    from dptune.methods.base import BaseGenerator
    from dptune.methods.context import GenerationContext
    from dptune.methods.dct.generator import DCTConfig, DCTGenerator
    from dptune.methods.dct.run import train_dct, trained_tokens
    from dptune.methods.dct.worlds import target_accuracy
    from dptune.utils.io import save_json

    cfg = train_config(setup)
    result = train_dct(cfg, progress=setup.progress)
    tokens = trained_tokens(cfg.out_dir)
    ctx = GenerationContext(setup.model, steps=QUICK_SAMPLE_STEPS if setup.quick else None)
    seeds = QUICK_SEEDS if setup.quick else SEEDS_PER_PROMPT
    report = {"target_count": TARGET, "train": {"steps": result.step, "stopped_early": result.stopped_early,
                                                "history": result.validation, "tokens": str(tokens)}}
    for name, gen in (("base", BaseGenerator(ctx)), ("dct", DCTGenerator(DCTConfig(tokens=str(tokens)), ctx))):
        report[name] = target_accuracy(gen, TARGET, seeds)
    save_json(Path(setup.out_dir) / "dct" / "target_accuracy.json", report)
    setup.notes.append(_note(report, seeds))
    return tokens


def _note(report: dict, seeds: int) -> dict:
    """The demo report's table: the judge on count-3 prompts, base vs dct, with Wilson intervals."""
    rows = []
    for name in ("base", "dct"):
        r = report[name]
        lo, hi = r["ci95"]
        rows.append([name, f"{100 * r['accuracy']:.1f}", f"{100 * lo:.1f}", f"{100 * hi:.1f}", str(r["n"])])
    return {"title": "DCT: a count-3 class token", "what": f"Exact-judge accuracy on count-{TARGET} prompts "
            f"({seeds} evaluation seeds per prompt, none used in training), base vs the learned token.",
            "header": ["method", "accuracy", "95% low", "95% high", "images"], "rows": rows}

