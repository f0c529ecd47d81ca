"""``EvalConfig``: every setting of an evaluation run (saved in results.json), and the scorers it builds."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dptune.utils.config import field


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
    model: str = field("shapesworld", help="diffusers folder, hub id, 'shapesworld' (shipped) or 'tiny-random'")
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

    def context(self):
        """The methods' shared :class:`~dptune.methods.GenerationContext` (model, device, steps, guidance)."""
        from dptune.methods import GenerationContext

        return GenerationContext(self.model, self.device, self.steps, self.guidance)


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


def set_scorers(prompt_set: str, shared: dict[str, Callable]) -> dict[str, Callable]:
    """Scorers of one prompt set: its world's own (e.g. the ShapesWorld judge) plus the shared ones."""
    from dptune.plugins import world_of_prompt_set

    world = world_of_prompt_set(prompt_set)
    scorers = dict(world.scorers if world is not None else {}) | shared
    if not scorers:
        raise ValueError(
            f"no metric for prompt set {prompt_set}: pass --clip and/or --blip weights (only the sets of a "
            "registered world, e.g. shapesworld-id, have a built-in judge)"
        )
    return scorers


def discriminative_items(cfg: EvalConfig) -> dict[str, tuple[list, list]]:
    """{set name: (ITM items, REC items)} from the registered worlds' sets and any COCO files given."""
    from dptune.evaluation import disc_items as di

    sets: dict[str, tuple[list, list]] = {}
    from dptune.plugins import disc_set_names, world_of_disc_set

    for name in (n for n in cfg.disc_sets if n != "none"):  # 'none': only the COCO files
        world = world_of_disc_set(name)
        if world is None:
            raise ValueError(
                f"unknown discriminative set {name!r}; registered sets: {disc_set_names()}; use "
                "--itm-json for HN-MSCOCO and --rec-file for RefCOCO"
            )
        sets[name] = world.disc_sets[name](cfg.disc_items, cfg.noise_seed)
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
