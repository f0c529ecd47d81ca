"""What every method's generator gets: the model, device and sampling settings, and a backbone cache."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dptune.utils.config import field as option

PAPER_SAMPLING = (50, 7.5)  # DDIM 50 steps, CFG 7.5 (paper B.3.3 / official code)


@dataclass
class GenerationContext:
    """Shared by the methods of one run (same model, same sampler, same seeds -> comparable images)."""

    model: str = option("shapesworld", help="diffusers folder, hub id, 'shapesworld' or 'tiny-random'")
    device: str = option("cpu", help="torch device")
    steps: int | None = option(None, help="sampling steps; default 25 for shipped/tiny models, else 50 (paper)")
    guidance: float | None = option(None, help="classifier-free guidance; default 4 for shipped models, else 7.5")
    scheduler: str = option("ddim", help="sampler: ddim, pndm, euler or dpmpp (paper: ddim)")
    dtype: str | None = option(None, help="model precision fp32 / fp16 / bf16 (guidance stays fp32)")
    negative_prompt: str | None = option(None, help="negative prompt of the unconditional branch")
    size: int | None = option(None, help="image height and width (default: the model's native size)")
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        default = sampling_defaults(self.model)
        self.steps = self.steps or default[0]
        self.guidance = default[1] if self.guidance is None else self.guidance
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")

    def backbone(self, lora: str | None = None):
        """The model (frozen, eval) with ``lora`` loaded; the last one is cached so methods sharing the same
        weights (dpt, dpt+sc, dpt+gsc) load them once."""
        key = (self.model, lora)
        if key not in self._cache:
            self._cache.clear()  # one model in memory at a time
            from dptune.backbone import load_backbone
            from dptune.sampling.pipeline import parse_dtype

            bb = load_backbone(self.model, device=self.device, dtype=parse_dtype(self.dtype))
            if lora:
                from dptune.backbone.lora_loading import load_lora_into
                from dptune.backbone.pipelines import ddim_pipeline

                load_lora_into(ddim_pipeline(bb), lora)
            self._cache[key] = bb.freeze()
        return self._cache[key]

    def pipeline(self, lora: str | None = None):
        """A :class:`~dptune.sampling.GuidedPipeline` over :meth:`backbone` with this context's sampler."""
        from dptune.backbone.pipelines import ddim_pipeline
        from dptune.sampling import GuidedPipeline

        pipe = GuidedPipeline(ddim_pipeline(self.backbone(lora)))
        return pipe.set_scheduler(self.scheduler) if self.scheduler != "ddim" else pipe

    def sample(self, pipe, prompts: list[str], seeds: list[int], **kw: Any):
        """Images (B, H, W, 3) in [0, 1] from ``pipe`` with this context's steps and guidance."""
        return pipe(list(prompts), [int(s) for s in seeds], num_inference_steps=self.steps,
                    guidance_scale=self.guidance, negative_prompt=self.negative_prompt, height=self.size,
                    width=self.size, output_type="np", progress=False, **kw)

    def release(self) -> None:
        self._cache.clear()


def sampling_defaults(model: str) -> tuple[int, float]:
    """(steps, guidance): the world's setting for a shipped model, else the paper's."""
    from dptune.plugins import sampling_defaults as world_defaults

    return world_defaults(model) or PAPER_SAMPLING
