"""Self-correcting generation (paper Sec. 3.3, Eq. 9) and ``DPTPipeline``.

>>> from dptune.sampling import DPTPipeline, SelfCorrectionConfig
>>> pipe = DPTPipeline.from_pretrained("shapesworld", adapter="runs/probe/final/adapter", scheduler="ddim")
>>> images = pipe(["a red circle left of a blue square"], seeds=[0], correction=SelfCorrectionConfig())
"""

from typing import Any

from dptune.sampling.config import DEFAULT_WINDOW, MODES, SelfCorrectionConfig

# Everything else needs torch/diffusers: loaded on first use so `dptune --help` stays fast.
_LAZY = {
    "CorrectionRecord": "correction", "SelfCorrector": "correction", "CFGDenoiser": "denoiser",
    "Conditioning": "denoiser", "SelfCorrectingDenoiser": "denoiser", "DPTPipeline": "pipeline",
    "load_lora_into": "pipeline", "load_probe": "pipeline", "load_sd_pipeline": "pipeline",
    "SCHEDULERS": "schedulers", "make_scheduler": "schedulers",
    "GroundingTargets": "grounded", "parse_relation": "grounded",
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
    "DPTPipeline",
    "GroundingTargets",
    "SelfCorrectingDenoiser",
    "SelfCorrectionConfig",
    "SelfCorrector",
    "load_lora_into",
    "parse_relation",
    "load_probe",
    "load_sd_pipeline",
    "make_scheduler",
]
