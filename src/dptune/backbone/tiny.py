"""A tiny random Stable Diffusion (diffusers-test style): runs on CPU in milliseconds.

Used by the tests and by ``load_backbone("tiny-random")`` for smoke runs; it has no learned weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

# A small closed vocabulary so that test prompts map to whole-word tokens (not letters); the words are the
# ones the tests' captions use and carry no world's meaning here.
TINY_WORDS = ("a an and the of to left right above below two three four red green blue yellow circle circles "
              "square squares triangle triangles").split()


def tiny_tokenizer():
    """A word-level CLIPTokenizer over :data:`TINY_WORDS` (16 positions including BOS/EOS)."""
    from dptune.backbone.tokenizers import build_clip_tokenizer

    return build_clip_tokenizer(TINY_WORDS, max_length=16)


def tiny_components(seed: int = 0, text_dim: int = 32, cross_dim: int = 32) -> dict:
    """Random tiny SD: U-Net 16/32 channels with cross-attention, VAE f=2, CLIP text 2 layers."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(16, 32),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_dim,
        attention_head_dim=4,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(8, 16),
        latent_channels=4,
        norm_num_groups=8,
        layers_per_block=1,
    )
    tokenizer = tiny_tokenizer()
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=text_dim,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=16,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    scheduler = DDIMScheduler(beta_schedule="squaredcos_cap_v2", clip_sample=False, steps_offset=1,
                              set_alpha_to_one=False)
    for m in (unet, vae, text_encoder):
        m.eval()
    return dict(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler)


SD_CONFIG_DIR = Path(__file__).resolve().parent.parent / "assets" / "sd-configs"
REAL_SIZE_VERSIONS = ("sd-v1-5", "sd-2-1-base")


def real_size_config(version: str, component: str = "unet") -> dict:
    """The published config of a real SD component (``version`` in :data:`REAL_SIZE_VERSIONS`)."""
    if version not in REAL_SIZE_VERSIONS:
        raise ValueError(f"unknown SD version {version!r}; choose from {REAL_SIZE_VERSIONS}")
    return json.loads((SD_CONFIG_DIR / version / component / "config.json").read_text())


def real_size_unet(version: str = "sd-2-1-base", seed: int = 0):
    """Real-size SD U-Net with random weights (865 M parameters; ~3.4 GB in fp32)."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel.from_config(real_size_config(version)).eval()
