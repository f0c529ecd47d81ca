"""A tiny Stable Diffusion for the 32x32 ShapesWorld, built from standard diffusers/transformers classes.

Sizes follow the measured prototype (see shared/reference/shapesworld-feasibility.md): a 0.9 M-parameter VAE
with f=4 (32x32x3 images -> 8x8x4 latents), a 2-layer 64-wide CLIP text encoder and a 1.8 M-parameter U-Net
with cross-attention in every block. Because only stock classes are used, the trained model saves and loads
as an ordinary ``StableDiffusionPipeline`` folder and every SD code path (probing, LoRA, sampling) applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dptune.backbone.tokenizers import build_clip_tokenizer
from dptune.utils.config import field


@dataclass
class TinySDConfig:
    """Architecture of the tiny ShapesWorld Stable Diffusion."""

    image_size: int = field(32, help="image side in pixels (ShapesWorld renders are 32x32)")
    latent_channels: int = field(4, help="VAE latent channels, as in SD 1.x")
    vae_channels: list = field([32, 64, 64], help="VAE block widths; n blocks downsample by 2**(n-1)")
    vae_layers_per_block: int = field(1, help="resnet layers per VAE block")
    vae_norm_groups: int = field(16, help="GroupNorm groups in the VAE (must divide every VAE width)")
    text_hidden: int = field(64, help="CLIP text encoder width (also the U-Net cross-attention width)")
    text_layers: int = field(2, help="CLIP text encoder transformer layers")
    text_heads: int = field(4, help="CLIP text encoder attention heads (must divide text_hidden)")
    text_ffn: int = field(128, help="CLIP text encoder feed-forward width")
    max_length: int = field(16, help="token positions incl. BOS/EOS (tokenizer model_max_length)")
    unet_channels: list = field([32, 64, 64], help="U-Net block widths; every block has cross-attention")
    unet_layers_per_block: int = field(1, help="resnet+attention layers per U-Net block")
    unet_norm_groups: int = field(32, help="GroupNorm groups in the U-Net (must divide every U-Net width)")
    attention_head_dim: int = field(
        8, help="diffusers' attention_head_dim (for UNet2DConditionModel this is the number of heads)"
    )
    num_train_timesteps: int = field(1000, help="diffusion training timesteps")
    beta_schedule: str = field("squaredcos_cap_v2", help="noise schedule of the DDIM scheduler")

    def __post_init__(self) -> None:
        self.vae_channels = [int(c) for c in self.vae_channels]
        self.unet_channels = [int(c) for c in self.unet_channels]
        if len(self.vae_channels) < 2:
            raise ValueError(f"vae_channels={self.vae_channels} must list >= 2 widths (one downsample at least)")
        if self.image_size % self.vae_factor:
            raise ValueError(
                f"image_size={self.image_size} is not divisible by the VAE factor {self.vae_factor}; "
                "change image_size or the number of vae_channels"
            )
        if len(self.unet_channels) < 2:
            raise ValueError(f"unet_channels={self.unet_channels} must list >= 2 widths")
        if self.latent_size % 2 ** (len(self.unet_channels) - 1):
            raise ValueError(
                f"latent size {self.latent_size} cannot be halved {len(self.unet_channels) - 1} times by the "
                "U-Net; use fewer unet_channels or a larger image_size"
            )
        for name, groups, widths in (
            ("vae_norm_groups", self.vae_norm_groups, self.vae_channels),
            ("unet_norm_groups", self.unet_norm_groups, self.unet_channels),
        ):
            if any(w % groups for w in widths):
                raise ValueError(f"{name}={groups} must divide every block width {widths}")
        if self.text_hidden % self.text_heads:
            raise ValueError(f"text_heads={self.text_heads} must divide text_hidden={self.text_hidden}")
        if any(w % self.attention_head_dim for w in self.unet_channels):
            raise ValueError(f"attention_head_dim={self.attention_head_dim} must divide {self.unet_channels}")
        if self.max_length < 3:
            raise ValueError(f"max_length={self.max_length} leaves no room for words; use >= 3")

    @property
    def vae_factor(self) -> int:
        return 2 ** (len(self.vae_channels) - 1)

    @property
    def latent_size(self) -> int:
        return self.image_size // self.vae_factor


def build_vae(cfg: TinySDConfig):
    from diffusers import AutoencoderKL

    n = len(cfg.vae_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=tuple(cfg.vae_channels),
        layers_per_block=cfg.vae_layers_per_block,
        latent_channels=cfg.latent_channels,
        norm_num_groups=cfg.vae_norm_groups,
        sample_size=cfg.image_size,
        mid_block_add_attention=False,  # attention at 8x8 buys nothing here and costs time
    )


def build_text_encoder(cfg: TinySDConfig, tokenizer):
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.text_hidden,
        intermediate_size=cfg.text_ffn,
        num_hidden_layers=cfg.text_layers,
        num_attention_heads=cfg.text_heads,
        max_position_embeddings=cfg.max_length,
        projection_dim=cfg.text_hidden,
        # The pooled output is read at the first EOS token, so the ids must be the tokenizer's real ones.
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config)


def build_unet(cfg: TinySDConfig):
    from diffusers import UNet2DConditionModel

    n = len(cfg.unet_channels)
    return UNet2DConditionModel(
        sample_size=cfg.latent_size,
        in_channels=cfg.latent_channels,
        out_channels=cfg.latent_channels,
        down_block_types=("CrossAttnDownBlock2D",) * n,
        up_block_types=("CrossAttnUpBlock2D",) * n,
        mid_block_type="UNetMidBlock2DCrossAttn",
        block_out_channels=tuple(cfg.unet_channels),
        layers_per_block=cfg.unet_layers_per_block,
        norm_num_groups=cfg.unet_norm_groups,
        attention_head_dim=cfg.attention_head_dim,
        cross_attention_dim=cfg.text_hidden,
    )


def build_scheduler(cfg: TinySDConfig):
    from diffusers import DDIMScheduler

    # steps_offset=1 and clip_sample=False match SD 1.5 and avoid diffusers' deprecation rewrites.
    return DDIMScheduler(
        num_train_timesteps=cfg.num_train_timesteps,
        beta_schedule=cfg.beta_schedule,
        prediction_type="epsilon",
        steps_offset=1,
        clip_sample=False,
        set_alpha_to_one=False,
    )


def build_components(cfg: TinySDConfig, vocabulary: list[str]) -> dict[str, Any]:
    """Randomly initialised ``dict(vae, text_encoder, tokenizer, unet, scheduler)`` for ``vocabulary``."""
    tokenizer = build_clip_tokenizer(vocabulary, max_length=cfg.max_length)
    unet = build_unet(cfg)
    if unet.mid_block is None:  # block names down0..downN, mid, up0..upN rely on a mid block
        raise RuntimeError("the tiny U-Net was built without a mid block; check mid_block_type")
    return {
        "vae": build_vae(cfg),
        "text_encoder": build_text_encoder(cfg, tokenizer),
        "tokenizer": tokenizer,
        "unet": unet,
        "scheduler": build_scheduler(cfg),
    }


def count_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def make_pipeline(components: dict[str, Any]):
    """Wrap components in a ``StableDiffusionPipeline`` without safety checker or feature extractor."""
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(
        vae=components["vae"],
        text_encoder=components["text_encoder"],
        tokenizer=components["tokenizer"],
        unet=components["unet"],
        scheduler=components["scheduler"],
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
