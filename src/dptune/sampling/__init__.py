"""Guided sampling: a scheduler-agnostic loop whose denoiser climbs any :class:`GuidanceObjective` (Eq. 9).

>>> from dptune.sampling import GuidedPipeline, SelfCorrectionConfig
>>> pipe = GuidedPipeline.from_pretrained("shapesworld", scheduler="ddim")
>>> images = pipe(["a red circle left of a blue square"], seeds=[0],
...               correction=SelfCorrectionConfig(), objective=my_objective)
"""

from typing import Any

from dptune.sampling.config import DEFAULT_WINDOW, MODES, SelfCorrectionConfig

# Everything else needs torch/diffusers: loaded on first use so `dptune --help` stays fast.
_LAZY = {
    "CorrectionRecord": "correction", "SelfCorrector": "correction", "CFGDenoiser": "denoiser",
    "Conditioning": "denoiser", "SelfCorrectingDenoiser": "denoiser", "GuidedPipeline": "pipeline",
    "load_sd_pipeline": "pipeline", "SCHEDULERS": "schedulers", "make_scheduler": "schedulers",
    "GuidanceCond": "guidance", "GuidanceObjective": "guidance",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"dptune.sampling.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'dptune.sampling' has no attribute {name!r}")


__all__ = [
    "DEFAULT_WINDOW",
    "MODES",
    "SCHEDULERS",
    "CFGDenoiser",
    "Conditioning",
    "CorrectionRecord",
    "GuidanceCond",
    "GuidanceObjective",
    "GuidedPipeline",
    "SelfCorrectingDenoiser",
    "SelfCorrectionConfig",
    "SelfCorrector",
    "load_sd_pipeline",
    "make_scheduler",
]
