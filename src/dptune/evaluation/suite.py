"""``evaluate_methods``: run the whole evaluation for several methods and write results.json + reports.

For each method: generate ``images_per_prompt`` images per prompt of every prompt set with shared seeds,
score them (ShapesWorld judge on ShapesWorld sets; CLIP / BLIP when their weights are given), optionally
FID / IS, and -- for methods with an adapter -- ITM accuracy and REC P@1 (computed once per distinct probe).
Then write ``results.json`` (every number with its settings), ``report.md`` and ``report.html``.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dptune.evaluation.methods import MethodSpec
from dptune.utils.config import field

RESULTS_FORMAT = "dptune-eval-results"
RESULTS_VERSION = 1
SHAPESWORLD_DEFAULTS = (25, 4.0)  # steps, guidance: the shipped tiny model's training validation setting
PAPER_DEFAULTS = (50, 7.5)  # DDIM 50 steps, CFG 7.5 (paper B.3.3 / official code)


@dataclass
class EvalConfig:
    """Every setting of an evaluation run (saved in results.json)."""

    prompts: list[str] = field(
        ["shapesworld-id", "shapesworld-ood"],
        help="prompt sets: shapesworld-id, shapesworld-ood, FORMAT:PATH, PATH, or none",
    )
    prompts_per_category: int = field(8, help="ShapesWorld prompts per category (4 categories)")
    prompt_seed: int = field(0, help="seed choosing the ShapesWorld prompts")
    max_prompts: int | None = field(None, help="keep only the first N prompts of a prompt file")
    images_per_prompt: int = field(4, help="images per prompt (k)")
    seed: int = field(0, help="base seed: image j of prompt i uses seed + i*k + j (same for every method)")
    steps: int | None = field(None, help="sampling steps; default 25 for shapesworld, else 50 (paper)")
    guidance: float | None = field(None, help="classifier-free guidance; default 4 for shapesworld, else 7.5")
    batch_size: int = field(16, help="images per generation batch")
    discriminative: bool = field(
        False, help="also evaluate ITM accuracy and REC P@1 of methods with an adapter"
    )
    disc_sets: list[str] = field(
        ["shapesworld-id", "shapesworld-ood"],
        help="ShapesWorld ITM/REC splits ('none' = only --itm-json / --rec-file)",
    )
    disc_items: int = field(200, help="ShapesWorld items per split and direction (ITM) / per split (REC)")
    itm_json: str | None = field(None, help="HN-MSCOCO JSON (dptune data build-hn-coco) for ITM")
    rec_file: str | None = field(None, help="RefCOCO refer index or MDETR json for REC")
    rec_splits: list[str] | None = field(None, help="REC splits to keep (e.g. testA testB)")
    image_dir: str | None = field(None, help="COCO image folder for --itm-json / --rec-file")
    max_items: int | None = field(None, help="keep only the first N COCO ITM/REC items")
    t: int = field(250, help="timestep of ITM/REC scoring (paper Table 10: 250 is best)")
    noise_seed: int = field(0, help="seed of the ITM/REC noise (same noise for all candidates of an item)")
    clip: str | None = field(None, help="CLIP score weights: transformers CLIPModel folder or open_clip file")
    clip_backend: str = field("transformers", help="'transformers' (folder) or 'open_clip' (weights file)")
    clip_arch: str = field("ViT-H-14", help="open_clip architecture (paper: ViT-H-14)")
    blip: str | None = field(
        None, help="BLIP / BLIP-2 image-text retrieval folder (BLIP-M and BLIP-C scores)"
    )
    fid_real: str | None = field(None, help="folder of real images: compute FID of every prompt set")
    inception_score: bool = field(False, help="compute the Inception Score of every prompt set")
    inception_weights: str | None = field(None, help="weights-inception-2015-12-05-6726825d.pth for FID/IS")
    is_splits: int = field(10, help="IS splits")
    n_boot: int = field(2000, help="bootstrap resamples for confidence intervals")
    ci_level: float = field(0.95, help="confidence level of the intervals")
    grid_prompts: int = field(8, help="prompts per prompt set shown in the report's image grids")
    out: str = field("runs/eval", help="output folder (results.json, report.md, report.html, images/)")
    device: str = field("cpu", help="torch device")

    def __post_init__(self) -> None:
        for name in (
            "prompts_per_category",
            "images_per_prompt",
            "batch_size",
            "disc_items",
            "n_boot",
            "is_splits",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.t < 1000:
            raise ValueError(f"t must be a timestep in [0, 1000), got {self.t}")
        if not 0 < self.ci_level < 1:
            raise ValueError(f"ci_level must be in (0, 1), got {self.ci_level}")
        if self.clip_backend not in ("transformers", "open_clip"):
            raise ValueError(f"clip_backend must be 'transformers' or 'open_clip', got {self.clip_backend!r}")
        if not [p for p in self.prompts if p != "none"] and not self.discriminative:
            raise ValueError("nothing to evaluate: give --prompts and/or --discriminative")

    def sampling(self, model: str) -> tuple[int, float]:
        d = SHAPESWORLD_DEFAULTS if model in ("shapesworld", "tiny-random") else PAPER_DEFAULTS
        return self.steps or d[0], self.guidance if self.guidance is not None else d[1]


def build_scorers(cfg: EvalConfig) -> dict[str, Callable]:
    """Model-based scorers shared by all prompt sets (loaded once)."""
    scorers: dict[str, Callable] = {}
    if cfg.clip:
        from dptune.evaluation.metrics_clip import CLIPScorer

        scorers["clip"] = (
            CLIPScorer.from_transformers(cfg.clip, cfg.device)
            if cfg.clip_backend == "transformers"
            else CLIPScorer.from_open_clip(cfg.clip_arch, cfg.clip, cfg.device)
        )
    if cfg.blip:
        from dptune.evaluation.metrics_blip import BLIPScorer

        scorers["blip"] = BLIPScorer.from_pretrained(cfg.blip, cfg.device)
    return scorers


def _set_scorers(kind: str, shared: dict[str, Callable], name: str) -> dict[str, Callable]:
    from dptune.evaluation.generative import judge_scorer

    scorers = ({"judge": judge_scorer} if kind == "shapesworld" else {}) | shared
    if not scorers:
        raise ValueError(
            f"no metric for prompt set {name}: pass --clip and/or --blip weights (only ShapesWorld "
            "sets have a built-in judge)"
        )
    return scorers


def discriminative_items(cfg: EvalConfig) -> dict[str, tuple[list, list]]:
    """{set name: (ITM items, REC items)} from the ShapesWorld splits and any COCO files given."""
    from dptune.evaluation import disc_items as di

    sets: dict[str, tuple[list, list]] = {}
    for name in (n for n in cfg.disc_sets if n != "none"):  # 'none': only the COCO files
        if name not in ("shapesworld-id", "shapesworld-ood"):
            raise ValueError(
                f"unknown discriminative set {name!r}; use shapesworld-id / shapesworld-ood, "
                "--itm-json for HN-MSCOCO and --rec-file for RefCOCO"
            )
        split = name.split("-", 1)[1]
        sets[name] = (
            di.shapesworld_itm_items(split, cfg.disc_items, cfg.noise_seed),
            di.shapesworld_rec_items(split, cfg.disc_items, cfg.noise_seed),
        )
    if cfg.itm_json:
        sets["hn-mscoco"] = (di.load_hn_coco_items(cfg.itm_json, cfg.image_dir, cfg.max_items), [])
    if cfg.rec_file:
        if not cfg.image_dir:
            raise ValueError("--rec-file needs --image-dir (the COCO train2014 folder)")
        sets["refcoco"] = (
            [],
            di.load_refcoco_items(cfg.rec_file, cfg.image_dir, cfg.rec_splits, cfg.max_items),
        )
    return sets


def _run_discriminative(probe, sets: dict, cfg: EvalConfig, progress: bool) -> dict:
    from dptune.evaluation.discriminative import evaluate_itm, evaluate_rec

    out = {}
    for name, (itm, rec) in sets.items():
        start = time.time()
        res: dict[str, Any] = {"t": cfg.t, "noise_seed": cfg.noise_seed}
        if itm:
            res["itm"] = evaluate_itm(probe, itm, cfg.t, cfg.noise_seed, progress=progress)
        if rec:
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


GeneratorFactory = Callable[[MethodSpec, EvalConfig], tuple[Callable, str]]


def _default_factories(cfg: EvalConfig):
    """(backbone/probe loader, generator maker) using dptune.evaluation.methods."""
    from dptune.evaluation import methods as m

    def load(spec: MethodSpec):
        bb = m.load_backbone_for(spec, cfg.device)
        return bb, m.load_probe_for(spec, bb)

    def generator(spec: MethodSpec, bb, probe):
        steps, guidance = cfg.sampling(spec.model)
        return m.make_generator(spec, bb, probe, steps, guidance)

    return load, generator


def _generative(
    spec: MethodSpec,
    generate,
    description: str,
    psets: list,
    shared: dict,
    cfg: EvalConfig,
    quality: tuple,
    progress: bool,
) -> dict[str, Any]:
    """Generate + score every prompt set for one method -> {set name: result}."""
    from dptune.evaluation.generative import evaluate_prompt_set

    out = Path(cfg.out)
    steps, guidance = cfg.sampling(spec.model)
    settings = {
        "steps": steps,
        "guidance": guidance,
        "eta": spec.eta,
        "sc": spec.sc,
        "generator": description,
    }
    results = {}
    for ps in psets:
        start = time.time()
        folder = out / "images" / spec.name.replace("+", "_") / ps.name.replace(":", "_").replace("/", "_")
        scorers = _set_scorers(ps.kind, shared, ps.name)
        res = evaluate_prompt_set(
            ps,
            generate,
            scorers,
            cfg.images_per_prompt,
            cfg.seed,
            cfg.batch_size,
            folder,
            out,
            cfg.n_boot,
            cfg.ci_level,
            settings,
            progress,
        )
        res["seconds"] = round(time.time() - start, 2)
        _quality(res, out, cfg, *quality)
        results[ps.name] = res
    return results


def _method_entry(
    spec: MethodSpec,
    load,
    generator,
    psets: list,
    shared: dict,
    disc_sets: dict,
    disc_cache: dict,
    cfg: EvalConfig,
    quality: tuple,
    progress: bool,
) -> dict[str, Any]:
    """Load one method, run its generative and (with an adapter) discriminative evaluation, free it."""
    bb, probe = load(spec)
    entry: dict[str, Any] = {
        "name": spec.name,
        "spec": spec.to_json(),
        "generative": {},
        "discriminative": None,
    }
    if psets:
        generate, description = generator(spec, bb, probe)
        entry["generative"] = _generative(spec, generate, description, psets, shared, cfg, quality, progress)
    if disc_sets and probe is not None:
        if spec.probe_key not in disc_cache:  # dpt and dpt+sc share one probe: evaluate it once
            disc_cache[spec.probe_key] = _run_discriminative(probe, disc_sets, cfg, progress)
        entry["discriminative"] = disc_cache[spec.probe_key]
    del bb, probe
    gc.collect()
    return entry


def evaluate_methods(
    methods: list[MethodSpec],
    cfg: EvalConfig,
    *,
    load=None,
    generator=None,
    fid_feature=None,
    is_classifier=None,
    progress: bool = True,
    write_report: bool = True,
) -> dict[str, Any]:
    """Evaluate ``methods`` under ``cfg``; write results.json (+ report.md / report.html) into ``cfg.out``.

    ``load(spec) -> (backbone, probe|None)`` and ``generator(spec, backbone, probe) -> (generate, text)``
    default to loading the real models; tests and demos may inject their own. ``fid_feature`` /
    ``is_classifier``: custom FID feature extractor / IS classifier modules. Returns the results dict.
    """
    from dptune.evaluation.prompt_sets import load_prompt_set
    from dptune.utils.config import to_dict
    from dptune.utils.io import save_json

    names = [m.name for m in methods]
    if not methods or len(set(names)) != len(names):
        raise ValueError(f"give one or more methods with unique names, got {names}")
    dflt_load, dflt_gen = _default_factories(cfg)
    load, generator = load or dflt_load, generator or dflt_gen
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    set_specs = [p for p in cfg.prompts if p != "none"]  # 'none': discriminative evaluation only
    psets = [
        load_prompt_set(p, cfg.prompts_per_category, cfg.prompt_seed, cfg.max_prompts) for p in set_specs
    ]
    shared = build_scorers(cfg)
    disc_sets = discriminative_items(cfg) if cfg.discriminative else {}
    disc_cache: dict[tuple, dict] = {}
    results: dict[str, Any] = {
        "format": RESULTS_FORMAT,
        "version": RESULTS_VERSION,
        "config": to_dict(cfg),
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "methods": [],
    }
    for spec in methods:
        results["methods"].append(
            _method_entry(
                spec,
                load,
                generator,
                psets,
                shared,
                disc_sets,
                disc_cache,
                cfg,
                (fid_feature, is_classifier),
                progress,
            )
        )
        save_json(out / "results.json", results)  # partial results survive a crash in a later method
    if write_report:
        from dptune.evaluation.report import write_report as write

        write(results, out)
    return results
