"""``hn-diffusion-itm``: the model with an HN-DiffusionITM LoRA; its ``probe`` is the DiffusionITM scorer.

    dptune train hn-diffusion-itm --steps 300 --out-dir runs/hn
    dptune eval --methods base,hn-diffusion-itm:lora=runs/hn/final/lora --prompts shapesworld-id

Generation is plain sampling with the LoRA (like ``dpt``); the discriminative evaluation scores ITM items
with :class:`~dptune.methods.diffusion_itm.scorer.DiffusionITMScorer` over the LoRA'd U-Net. The zero-shot
DiffusionITM (no LoRA) is the same scorer over the base model: ``DiffusionITMScorer(ctx.backbone())``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dptune.methods.diffusion_itm.scorer import DEFAULT_TIMESTEPS
from dptune.methods.registry import DemoSetup, Method, MethodRun, parse_method, register_method
from dptune.utils.config import field

TRAINED_BY = "dptune train hn-diffusion-itm"
PAPER = "Krojer et al., NeurIPS 2023 (McGill-NLP/diffusion-itm)"


@dataclass
class HNDiffusionITMConfig:
    """The HN LoRA and the scorer's settings."""

    lora: str | None = field(None, help="HN LoRA folder (a `dptune train hn-diffusion-itm` run's final/lora)")
    timesteps: tuple = field(DEFAULT_TIMESTEPS, help="scoring timesteps, e.g. 10:110:210 (paper: 10, 110, ..., 910)")
    subtract_uncond: bool = field(True, help="subtract the unconditional distance (paper: for image retrieval; "
                                  "rank-neutral for text retrieval)")
    noise_seed: int = field(0, help="seed of the per-timestep noise shared by all candidates")

    def __post_init__(self) -> None:
        if not self.timesteps or any(float(t) != int(float(t)) or int(float(t)) < 0 for t in self.timesteps):
            raise ValueError(f"timesteps must be non-negative integers, e.g. 10:110:210; got {self.timesteps!r}")
        self.timesteps = tuple(int(float(t)) for t in self.timesteps)


class HNDiffusionITMGenerator:
    """(prompts, seeds) -> images with the LoRA; ``probe``: the DiffusionITM scorer over the same U-Net."""

    def __init__(self, ctx, cfg: HNDiffusionITMConfig) -> None:
        from dptune.methods.diffusion_itm.scorer import DiffusionITMScorer

        self.ctx, self.pipe = ctx, ctx.pipeline(cfg.lora)
        self.probe = DiffusionITMScorer(ctx.backbone(cfg.lora), cfg.timesteps, cfg.noise_seed, cfg.subtract_uncond)
        self.probe_key = ("diffusion-itm", ctx.model, cfg.lora, cfg.timesteps, cfg.subtract_uncond, cfg.noise_seed)
        self.description = f"GuidedPipeline (DDIM) + HN-DiffusionITM LoRA; ITM by denoising error at t={cfg.timesteps}"

    def __call__(self, prompts: list[str], seeds: list[int]):
        return self.ctx.sample(self.pipe, prompts, seeds)


def _generator(cfg: HNDiffusionITMConfig, ctx) -> HNDiffusionITMGenerator:
    return HNDiffusionITMGenerator(ctx, cfg)


def _train(cfg, progress: bool = True, resume: bool = True):
    from dptune.methods.diffusion_itm.training import train_hn

    return train_hn(cfg, resume=resume, progress=progress)


DEMO_STEPS = (300, 3)  # (full, quick); ~1 s per step of 8 images on 2 CPU cores with the shipped model
DEMO_MINUTES = 4.0


def _demo(setup: DemoSetup) -> list[MethodRun]:
    from dptune.methods.diffusion_itm.training import HNTrainConfig

    full, quick = DEMO_STEPS
    cfg = HNTrainConfig(out_dir=str(Path(setup.out_dir) / "hn-diffusion-itm"), model=setup.model, seed=setup.seed,
                        steps=quick if setup.quick else full, batch_size=2 if setup.quick else 8, log_every=5,
                        checkpoint_every=10**9, max_minutes=None if setup.quick else DEMO_MINUTES)
    result = _train(cfg, progress=setup.progress)
    return [parse_method("hn-diffusion-itm", {"lora": str(Path(result.out_dir) / "final" / "lora")})]


def register() -> None:
    from dptune.methods.diffusion_itm.training import HNTrainConfig

    register_method(Method(
        "hn-diffusion-itm", "HN-DiffusionITM: a U-Net LoRA tuned so the true caption denoises the image better "
        "than its hard negative; ITM by denoising error (DiffusionITM) beside the DPT probe", HNDiffusionITMConfig,
        _generator, train=_train, weights=("lora",), trained_by=TRAINED_BY, paper=PAPER, train_config=HNTrainConfig,
        demo=_demo))
