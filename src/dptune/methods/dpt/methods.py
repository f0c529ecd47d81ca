"""DPT's registered methods: their configs and generators.

=========  ==========================================================  ===========================
name       generation                                                  weights
=========  ==========================================================  ===========================
dpt        model + stage-2 LoRA (paper Sec. 3.2)                        lora (adapter: for ITM/REC)
dpt+sc     + self-correction on the matching score (paper Eq. 9)        adapter (+ lora)
dpt+gsc    + Eq. 9 on the REC boxes of relation prompts (extension)     adapter (+ lora)
=========  ==========================================================  ===========================
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dptune.methods.registry import Method, register_method
from dptune.sampling.config import SelfCorrectionConfig
from dptune.utils.config import field

TRAINED_BY = "dptune probe && dptune tune"


@dataclass
class DPTConfig:
    """Stage-2 weights; the adapter is optional and only used for the discriminative (ITM / REC) evaluation."""

    lora: str | None = field(None, help="stage-2 LoRA folder (a `dptune tune` run's final/lora or best/lora)")
    adapter: str | None = field(None, help="adapter folder (final/adapter); 'random' = untrained, smoke runs")
    blocks: list[str] | None = field(None, help="probed blocks, e.g. mid+up1; default: the adapter's run config")
    fuse: str | None = field(None, help="block fusion 'sum' / 'concat'; default: the adapter's run config")


@dataclass
class DPTSCConfig(SelfCorrectionConfig):
    """Eq. 9 self-correction on the adapter's matching score; ``lora`` empty = the stage-1 probe on base SD."""

    lora: str | None = field(None, help="stage-2 LoRA folder (empty: self-correct the base model)")
    adapter: str | None = field(None, help="adapter folder whose matching score is climbed")
    blocks: list[str] | None = field(None, help="probed blocks; default: the adapter's run config")
    fuse: str | None = field(None, help="block fusion; default: the adapter's run config")


@dataclass
class GroundedSCConfig(DPTSCConfig):
    """Grounded self-correction (extension): Eq. 9's update on a hinge over the REC boxes of relation prompts."""

    eta: float = field(0.1, help="step size of the unit-RMS update (demo: 0.1)")
    normalize_grad: bool = field(True, help="unit-RMS gradient per sample (the hinge's scale is arbitrary)")
    ground_t: int = field(100, help="timestep at which the REC head reads the denoiser's clean estimate")
    relation_margin: float = field(0.25, help="wanted offset of the two box centres along the relation (widths)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.ground_t, bool) or not isinstance(self.ground_t, int) or not 0 <= self.ground_t < 1000:
            raise ValueError(f"ground_t must be an integer in [0, 1000); got {self.ground_t!r}")
        if not (isinstance(self.relation_margin, int | float) and math.isfinite(self.relation_margin)
                and 0 < self.relation_margin <= 1):
            raise ValueError(f"relation_margin must be in (0, 1] (image widths); got {self.relation_margin!r}")


class DPTGenerator:
    """(prompts, seeds) -> images, optionally self-corrected; ``probe`` serves the ITM / REC evaluation."""

    def __init__(self, ctx, cfg, objective_cls=None, **objective_kw) -> None:
        from dptune.adapter import load_probe

        self.ctx, self.cfg = ctx, cfg
        self.pipe = ctx.pipeline(cfg.lora)
        backbone = ctx.backbone(cfg.lora)
        self.probe = load_probe(backbone, cfg.adapter, cfg.blocks, cfg.fuse) if cfg.adapter else None
        self.probe_key = (ctx.model, cfg.adapter, cfg.lora, tuple(cfg.blocks or ()), cfg.fuse)
        self.correction = cfg if objective_cls is not None and cfg.enabled else None
        self.objective = objective_cls(self.probe, **objective_kw) if self.correction else None
        self.description = "GuidedPipeline (DDIM)" + (
            f", Eq. 9 on {objective_cls.__name__}, eta {cfg.eta}, window {cfg.window}" if self.correction else "")

    def __call__(self, prompts: list[str], seeds: list[int]):
        return self.ctx.sample(self.pipe, prompts, seeds, correction=self.correction, objective=self.objective)


def _dpt(cfg: DPTConfig, ctx) -> DPTGenerator:
    return DPTGenerator(ctx, cfg)


def _dpt_sc(cfg: DPTSCConfig, ctx) -> DPTGenerator:
    from dptune.methods.dpt.objectives import MatchScore

    return DPTGenerator(ctx, cfg, MatchScore)


def _dpt_gsc(cfg: GroundedSCConfig, ctx) -> DPTGenerator:
    from dptune.methods.dpt.objectives import GroundedRelation

    return DPTGenerator(ctx, cfg, GroundedRelation, ground_t=cfg.ground_t, margin=cfg.relation_margin)


def _train(train_cfg, **kw):
    """Stage 1 or 2 (``train_cfg.stage``) on the shared trainer."""
    from dptune.training import train

    return train(train_cfg, **kw)


def _train_config() -> type:
    from dptune.training.config import TrainConfig

    return TrainConfig


def register() -> None:
    register_method(Method(
        "dpt", "DPT stage 2: Stable Diffusion with the LoRA tuned on ITM + REC (paper Sec. 3.2)", DPTConfig,
        _dpt, train=_train, weights=("lora",), trained_by=TRAINED_BY, paper="Qu et al., CVPR 2024",
        train_config=_train_config()))
    register_method(Method(
        "dpt+sc", "DPT + self-correction: Eq. 9 climbs the adapter's matching score while sampling (default "
        "window: first half of the steps; window=0:1 = every step)", DPTSCConfig, _dpt_sc,
        weights=("adapter",), trained_by=TRAINED_BY, paper="Qu et al., CVPR 2024, Eq. 9"))
    register_method(Method(
        "dpt+gsc", "DPT + grounded self-correction (extension, not the paper): Eq. 9 on the REC boxes of the "
        "two objects of 'X left of / above ... Y' prompts; other prompts are not corrected", GroundedSCConfig,
        _dpt_gsc, weights=("adapter",), trained_by=TRAINED_BY, paper="extension of Eq. 9"))
