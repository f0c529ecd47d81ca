"""``evaluate_methods``: run the whole evaluation for several registered methods; write results + reports.

For each method (a :class:`~dptune.methods.MethodRun` from the registry): generate ``images_per_prompt``
images per prompt of every prompt set with shared seeds, score them (the world's judge on its sets; CLIP /
BLIP when their weights are given), optionally FID / IS, and -- for methods whose generator carries a
discriminative probe -- ITM accuracy and REC P@1 (computed once per distinct probe). Then write
``results.json`` (every number with its settings), ``report.md`` and ``report.html``.
"""

from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import Any

from dptune.evaluation.config import EvalConfig, build_scorers, discriminative_items, set_scorers

RESULTS_FORMAT = "dptune-eval-results"
RESULTS_VERSION = 2  # 2: methods come from the registry ("spec" = {method, label, config})


def _run_discriminative(probe, sets: dict, cfg: EvalConfig, progress: bool) -> dict:
    from dptune.evaluation.discriminative import evaluate_itm, evaluate_rec

    out = {}
    for name, (itm, rec) in sets.items():
        start = time.time()
        res: dict[str, Any] = {"t": cfg.t, "noise_seed": cfg.noise_seed}
        if itm:
            res["itm"] = evaluate_itm(probe, itm, cfg.t, cfg.noise_seed, progress=progress)
        if rec and getattr(probe, "supports_rec", True):  # a scorer without boxes (DiffusionITM) skips REC
            res["rec"] = evaluate_rec(probe, rec, cfg.t, cfg.noise_seed, progress=progress)
        res["seconds"] = round(time.time() - start, 2)
        out[name] = res
    return out


def _quality(result: dict, out_dir: Path, cfg: EvalConfig, fid_feature, is_classifier) -> None:
    """FID / IS of one prompt set's saved images (added to ``result['quality']``)."""
    import numpy as np

    from dptune.evaluation import metrics_fid as mf

    if not (cfg.fid_real or cfg.inception_score):
        return
    from PIL import Image

    fake = np.stack([np.asarray(Image.open(out_dir / r["file"]).convert("RGB")) for r in result["images"]])
    q: dict[str, Any] = {"n_generated": len(fake)}
    if cfg.fid_real:
        real = mf.load_image_folder(cfg.fid_real, size=fake.shape[1])
        q["fid"] = mf.fid_score(real, fake, fid_feature, cfg.inception_weights)
        q["n_real"] = len(real)
    if cfg.inception_score:
        q["is_mean"], q["is_std"] = mf.inception_score(
            fake, is_classifier, cfg.is_splits, cfg.inception_weights
        )
    result["quality"] = q


def _generative(run, generate, psets: list, shared: dict, cfg: EvalConfig, ctx, quality: tuple,
                progress: bool) -> dict[str, Any]:
    """Generate + score every prompt set for one method -> {set name: result}."""
    from dptune.evaluation.generative import evaluate_prompt_set

    out = Path(cfg.out)
    settings = {"model": ctx.model, "steps": ctx.steps, "guidance": ctx.guidance, "method": run.to_json(),
                "generator": getattr(generate, "description", "")}
    results = {}
    for ps in psets:
        start = time.time()
        folder = out / "images" / safe_name(run.label) / ps.name.replace(":", "_").replace("/", "_")
        res = evaluate_prompt_set(ps, generate, set_scorers(ps.name, shared), cfg.images_per_prompt, cfg.seed,
                                  cfg.batch_size, folder, out, cfg.n_boot, cfg.ci_level, settings, progress)
        res["seconds"] = round(time.time() - start, 2)
        res["seconds_per_image"] = round(res["seconds"] / max(1, len(res["images"])), 4)
        _quality(res, out, cfg, *quality)
        results[ps.name] = res
    return results


def safe_name(label: str) -> str:
    """A folder name for a method label such as 'dpt+sc:eta=0.2' -> 'dpt_sc-eta_0.2'."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in label.replace(":", "-"))


def _method_entry(run, psets: list, shared: dict, disc_sets: dict, disc_cache: dict, cfg: EvalConfig, ctx,
                  quality: tuple, progress: bool) -> dict[str, Any]:
    """Build one method's generator, run its generative and (with a probe) discriminative evaluation."""
    generate = run.method.generator(run.config, ctx)
    from dptune.methods.cost import method_cost

    entry: dict[str, Any] = {"name": run.label, "spec": run.to_json(), "generative": {}, "discriminative": None,
                             "cost": method_cost(run.method, run.config)}
    if psets:
        entry["generative"] = _generative(run, generate, psets, shared, cfg, ctx, quality, progress)
    probe = getattr(generate, "probe", None)
    if disc_sets and probe is not None:
        key = getattr(generate, "probe_key", id(probe))
        if key not in disc_cache:  # dpt and dpt+sc share one probe: evaluate it once
            disc_cache[key] = _run_discriminative(probe, disc_sets, cfg, progress)
        entry["discriminative"] = disc_cache[key]
    del generate, probe
    gc.collect()
    return entry


def evaluate_methods(runs: list, cfg: EvalConfig, *, context=None, fid_feature=None, is_classifier=None,
                     progress: bool = True, write_report: bool = True) -> dict[str, Any]:
    """Evaluate the method ``runs`` (:class:`~dptune.methods.MethodRun`) under ``cfg``; write results.json
    (+ report.md / report.html) into ``cfg.out`` and return the results dict.

    ``context``: the methods' shared :class:`~dptune.methods.GenerationContext` (default: from ``cfg``).
    ``fid_feature`` / ``is_classifier``: custom FID feature extractor / IS classifier modules.
    """
    from dptune.evaluation.prompt_sets import load_prompt_set
    from dptune.utils.config import to_dict
    from dptune.utils.io import save_json

    labels = [r.label for r in runs]
    if not runs or len(set(labels)) != len(labels):
        raise ValueError(f"give one or more methods with unique labels, got {labels}")
    for run in runs:  # before any model loads: a missing weight folder fails now, not an hour in
        run.check_weights()
    ctx = context or cfg.context()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    psets = [load_prompt_set(p, cfg.prompts_per_category, cfg.prompt_seed, cfg.max_prompts)
             for p in cfg.prompts if p != "none"]  # 'none': discriminative evaluation only
    shared = build_scorers(cfg)
    disc_sets = discriminative_items(cfg) if cfg.discriminative else {}
    disc_cache: dict[Any, dict] = {}
    results: dict[str, Any] = {"format": RESULTS_FORMAT, "version": RESULTS_VERSION, "config": to_dict(cfg),
                               "created": time.strftime("%Y-%m-%d %H:%M:%S"), "methods": []}
    for run in runs:
        results["methods"].append(_method_entry(run, psets, shared, disc_sets, disc_cache, cfg, ctx,
                                                (fid_feature, is_classifier), progress))
        save_json(out / "results.json", results)  # partial results survive a crash in a later method
    ctx.release()
    if write_report:
        from dptune.evaluation.report import write_report as write

        write(results, out)
    return results
