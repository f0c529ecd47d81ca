"""``base``: the model as it is, through the same sampling code path as every other method."""

from __future__ import annotations

from dataclasses import dataclass

from dptune.methods.registry import Method, register_method


@dataclass
class BaseConfig:
    """No options: plain Stable Diffusion (DDIM, the run's steps and guidance)."""


class BaseGenerator:
    description = "GuidedPipeline (DDIM), no guidance"
    probe = None

    def __init__(self, ctx) -> None:
        self.ctx, self.pipe = ctx, ctx.pipeline(None)

    def __call__(self, prompts: list[str], seeds: list[int]):
        return self.ctx.sample(self.pipe, prompts, seeds)


def register() -> None:
    register_method(Method("base", "the model as is (the baseline every method is compared with)", BaseConfig,
                           lambda cfg, ctx: BaseGenerator(ctx)))
