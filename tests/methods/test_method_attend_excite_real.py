"""Attend-and-Excite on the real-size SD 1.5 U-Net (random weights): one step, maps of side 16, hooks restored."""

from __future__ import annotations

import numpy as np
import pytest

from dptune.methods.attend_excite.config import AttendExciteConfig
from dptune.methods.attend_excite.pipeline import AttendExcitePipeline, pick_resolution, restored_attention
from dptune.methods.attend_excite.subjects import subject_tokens

pytestmark = pytest.mark.slow


def test_one_step_on_real_size_sd15(sd15_unet):
    import torch
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    from dptune.backbone.tiny import tiny_components

    parts = tiny_components(text_dim=768, cross_dim=768)  # tiny VAE (f = 2) and text tower, 768-d context
    parts["unet"] = sd15_unet
    parts["scheduler"] = DDIMScheduler.from_config(parts["scheduler"].config)
    sd = StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    cfg = AttendExciteConfig(thresholds={})  # random weights never reach the paper's thresholds
    pipe = AttendExcitePipeline.over(sd, cfg)
    prompt = "a red circle and a green triangle"
    indices = subject_tokens(prompt, pipe.tokenizer)
    pipe.n_tokens = len(pipe.tokenizer(prompt).input_ids)
    res = pick_resolution(sd15_unet, 32, cfg.attention_res)  # 64 px / f 2 -> latent 32: maps 32, 16, 8
    before = {k: id(v) for k, v in sd15_unet.attn_processors.items()}
    steps, thresholds = cfg.schedule(1)
    with restored_attention(sd15_unet), torch.no_grad():
        out = pipe(prompt=[prompt], token_indices=[indices], num_inference_steps=1, guidance_scale=7.5,
                   height=64, width=64, generator=[torch.Generator().manual_seed(0)], max_iter_to_alter=steps,
                   thresholds=thresholds, attn_res=(res, res), output_type="np")
    assert res == 16 and indices == [3, 7]
    assert out.images.shape == (1, 64, 64, 3) and np.isfinite(out.images).all()
    assert {k: id(v) for k, v in sd15_unet.attn_processors.items()} == before
