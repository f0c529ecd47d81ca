"""The registered method ``referee``: its config, generator and demo hook."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dptune.methods.referee.inversion import InversionConfig, Inverter
from dptune.methods.referee.shapes_model import ALIAS
from dptune.utils.config import field

PAPER_PREFIX = "A photo exactly contains "  # the SDS prompt prefix of the paper's code
DEMO_ITERATIONS = 16  # ShapesWorld demo rows: ~+25% of the demo's time for both (docs/referee.md)


@dataclass
class RefereeConfig(InversionConfig):
    """Which referee(s) judge the image, plus every inversion setting (paper defaults)."""

    referee: str = field(ALIAS, help="referee spec: a folder, 'shapesworld-referee', 'clip:DIR|ID', 'blip2:DIR|ID', "
                         "'dpt:ADAPTER_DIR'; an ensemble joins them with '+' and weights with '*W' (normalised)")
    dpt_t: int = field(100, help="timestep at which a DPT-adapter referee reads the encoded image")
    init: str = field("noise", help="start latent: 'noise' (the paper) or 'sample' (extension: the base model's "
                      "DDIM sample, VAE-encoded, so the referee refines an image instead of building one)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.init not in ("noise", "sample"):
            raise ValueError(f"init must be 'noise' or 'sample'; got {self.init!r}")
        if not self.referee or not self.referee.strip():
            raise ValueError("referee must name a referee, e.g. 'shapesworld-referee' or 'clip:DIR'")


class RefereeGenerator:
    """(prompts, seeds) -> images by inverting the referee from each seed's Gaussian latent."""

    probe = None

    def __init__(self, ctx, cfg: RefereeConfig, progress: bool = False) -> None:
        from dptune.methods.referee.referees import load_referee
        from dptune.plugins import world_of_model

        self.ctx, self.cfg, self.progress = ctx, cfg, progress
        self.backbone = ctx.backbone(None)
        self.referee = load_referee(cfg.referee, ctx.device, backbone_fn=lambda: self.backbone, t=cfg.dpt_t)
        prefix = cfg.sds_prefix
        if prefix is None:  # a world's shipped model has no words for the paper's prefix
            prefix = "" if world_of_model(ctx.model) is not None else PAPER_PREFIX
        side = (ctx.size or self.backbone.image_size) // self.backbone.vae_scale_factor
        self.inverter = Inverter(self.backbone, self.referee, cfg, prefix, latent_side=side)
        sds = (f"SDS {cfg.sds_weight:g}->{cfg.sds_weight_final:g}, CFG {cfg.sds_guidance:g}" if cfg.uses_sds
               else "no SDS")
        self.pipe = ctx.pipeline(None) if cfg.init == "sample" else None
        self.description = (f"referee inversion of {self.referee.name}: {cfg.iterations} iterations, {cfg.views} "
                            f"views (keep {cfg.keep}), {sds}" + (", from the base sample" if self.pipe else ""))

    def _start(self, prompts: list[str], seeds: list[int]) -> torch.Tensor | None:
        """The base model's samples encoded to latents (init='sample'), else None (Gaussian start)."""
        if self.pipe is None:
            return None
        images = torch.from_numpy(self.ctx.sample(self.pipe, prompts, seeds)).permute(0, 3, 1, 2)  # (B, 3, H, W)
        with torch.no_grad():
            return self.backbone.encode_images(images.float() * 2 - 1)  # (B, 4, h, w)

    def __call__(self, prompts: list[str], seeds: list[int]):
        with torch.enable_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seeds[0]))  # kornia draws its augmentations from the global generator
            seeds = [int(s) for s in seeds]
            images, self.last_curve = self.inverter(list(prompts), seeds, self.progress,
                                                    init=self._start(list(prompts), seeds))
        return images.permute(0, 2, 3, 1).cpu().numpy()  # (B, H, W, 3) in [0, 1]


def make_generator(cfg: RefereeConfig, ctx) -> RefereeGenerator:
    return RefereeGenerator(ctx, cfg)


def demo_runs(setup) -> list:
    """Two rows on the shipped referee: with and without SDS (nothing to train: the referee is shipped)."""
    from dptune.methods.registry import parse_method

    iters = 4 if setup.quick else DEMO_ITERATIONS
    # the paper's schedule (warm-up 10, EMA write-backs at 40 and 100 of 160) scaled to the demo's iterations
    common = f"iterations={iters},lr_warmup={max(1, iters // 16)},ema_start={max(1, iters // 4)},ema_every={iters}"
    return [parse_method(f"referee:{common}", label="referee + SDS"),
            parse_method(f"referee:{common},sds_weight=0,sds_weight_final=0", label="referee (no SDS)")]
