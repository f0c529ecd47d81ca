"""The one diffusers pipeline builder: a ``StableDiffusionPipeline`` over an :class:`SDBackbone`'s modules.

Generation, evaluation and training-time validation all sample through it, so equal seeds give equal noise
and a LoRA or hook installed in the backbone's U-Net is what every caller sees.
"""

from __future__ import annotations


def ddim_pipeline(backbone):
    """A ``StableDiffusionPipeline`` sharing ``backbone``'s modules, with a DDIM sampler (paper B.3.3)."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=backbone.vae,
        text_encoder=backbone.text_encoder,
        tokenizer=backbone.tokenizer,
        unet=backbone.unet,
        scheduler=DDIMScheduler.from_config(backbone.scheduler.config),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
