"""``SDBackbone``: the few Stable Diffusion operations DPT needs, on any SD 1.x / 2.x checkpoint.

Text embeddings. The U-Net is conditioned on the text encoder's ``last_hidden_state`` (as the diffusers
pipeline does). DPT's matching score compares the adapter's query projections with ``CLIP(y)``
(paper Sec. 3.1); we use the text encoder's ``pooler_output``: the final-layer-normed hidden state at the EOS
token, without the CLIP text projection (the official code does the same):
  * SD 1.x (CLIP ViT-L/14 text tower, 12 layers): 768-d pooled EOS state;
  * SD 2.x (OpenCLIP ViT-H/14 text tower as shipped by diffusers, 23 layers): 1024-d pooled EOS state.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from dptune.backbone.taps import (
    block_channels_from_config,
    block_names,
    check_blocks,
    feature_taps,
    fuse_features,
    run_tapped,
)


@dataclass
class TextEmbeddings:
    hidden: torch.Tensor  # (B, L, D): U-Net cross-attention context
    pooled: torch.Tensor  # (B, Dp): CLIP(y) for the matching score


class SDBackbone:
    """Holds the SD components; every DPT stage goes through this object."""

    def __init__(self, vae, text_encoder, tokenizer, unet, scheduler):
        from diffusers import DDPMScheduler

        self.vae, self.text_encoder, self.tokenizer = vae, text_encoder, tokenizer
        self.unet, self.scheduler = unet, scheduler
        # Training adds noise with the DDPM formulation of the model's own schedule (same betas).
        self.noise_scheduler = DDPMScheduler.from_config(scheduler.config)

    @classmethod
    def from_pipeline(cls, pipe) -> SDBackbone:
        return cls(pipe.vae, pipe.text_encoder, pipe.tokenizer, pipe.unet, pipe.scheduler)

    # ---- properties -------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.unet.device

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.dtype

    @property
    def text_dim(self) -> int:
        """Dimension of the pooled text embedding CLIP(y)."""
        return int(self.text_encoder.config.hidden_size)

    @property
    def blocks(self) -> list[str]:
        return block_names(self.unet)

    @property
    def num_train_timesteps(self) -> int:
        return int(self.noise_scheduler.config.num_train_timesteps)

    @property
    def latent_size(self) -> int:
        return int(self.unet.config.sample_size)

    @property
    def image_size(self) -> int:
        return self.latent_size * self.vae_scale_factor

    @property
    def vae_scale_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def block_channels(self, name: str) -> int:
        """Channel count of a tapped block (read from the config, no forward pass)."""
        check_blocks(self.unet, [name])
        return block_channels_from_config(self.unet.config, name)

    def to(self, device=None, dtype=None) -> SDBackbone:
        kwargs = {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}
        if kwargs:
            for m in (self.vae, self.text_encoder, self.unet):
                m.to(**kwargs)
        return self

    def freeze(self) -> SDBackbone:
        for m in (self.vae, self.text_encoder, self.unet):
            m.requires_grad_(False)
            m.eval()
        return self

    # ---- text -----------------------------------------------------------------------------------------
    def tokenize(self, prompts: Sequence[str]) -> torch.Tensor:
        if isinstance(prompts, str):
            prompts = [prompts]
        tok = self.tokenizer
        ids = tok(list(prompts), padding="max_length", max_length=tok.model_max_length, truncation=True,
                  return_tensors="pt").input_ids
        full = tok(list(prompts), padding=False, truncation=False).input_ids
        too_long = [p for p, f in zip(prompts, full, strict=True) if len(f) > tok.model_max_length]
        if too_long:
            warnings.warn(
                f"{len(too_long)} prompt(s) exceed the tokenizer limit of {tok.model_max_length} tokens and are "
                f"truncated, e.g. {too_long[0][:80]!r}",
                stacklevel=2,
            )
        return ids.to(self.text_encoder.device)

    def encode_text(self, prompts: Sequence[str]) -> TextEmbeddings:
        ids = self.tokenize(prompts)  # (B, L)
        mask = None
        if getattr(self.text_encoder.config, "use_attention_mask", False):
            mask = (ids != self.tokenizer.pad_token_id).long()
        out = self.text_encoder(ids, attention_mask=mask)
        return TextEmbeddings(hidden=out.last_hidden_state, pooled=out.pooler_output)

    # ---- images / latents -----------------------------------------------------------------------
    def encode_images(self, images: torch.Tensor, sample: bool = False, generator=None) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> scaled latents (B, 4, H/f, W/f)."""
        images = images.to(device=self.vae.device, dtype=self.vae.dtype)
        dist = self.vae.encode(images).latent_dist
        latents = dist.sample(generator) if sample else dist.mode()
        return latents * self.vae.config.scaling_factor

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents -> images in [-1, 1]."""
        latents = latents.to(device=self.vae.device, dtype=self.vae.dtype)
        return self.vae.decode(latents / self.vae.config.scaling_factor).sample.clamp(-1, 1)

    def add_noise(self, latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """z_t = sqrt(abar_t) z_0 + sqrt(1 - abar_t) eps with the model's schedule."""
        return self.noise_scheduler.add_noise(latents, noise, t)

    def denoise_target(self, latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the U-Net is trained to predict (epsilon or v), for the optional MSE term."""
        kind = self.noise_scheduler.config.prediction_type
        if kind == "epsilon":
            return noise
        if kind == "v_prediction":
            return self.noise_scheduler.get_velocity(latents, noise, t)
        raise ValueError(f"unsupported prediction_type {kind!r} (expected 'epsilon' or 'v_prediction')")

    # ---- U-Net ----------------------------------------------------------------------------------
    def predict_noise(self, z_t: torch.Tensor, t: torch.Tensor, text_hidden: torch.Tensor) -> torch.Tensor:
        return self.unet(z_t, t, encoder_hidden_states=text_hidden).sample

    def features(
        self,
        z_t: torch.Tensor,
        t: torch.Tensor,
        text_hidden: torch.Tensor,
        blocks: Sequence[str] = ("mid",),
        fuse: str | None = "sum",
        truncate: bool = True,
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """Feature maps of ``blocks`` for z_t at t given text (paper Eq. 1).

        With ``truncate`` the U-Net stops after the last requested block. ``fuse`` = ``sum``/``concat``
        combines several blocks into one (B, C, H, W) map (see :func:`fuse_features`); ``None`` returns the
        dict ``{block: (B, C_b, H_b, W_b)}``.
        """
        with feature_taps(self.unet, blocks, truncate=truncate) as taps:
            run_tapped(self.unet, taps, z_t, t, encoder_hidden_states=text_hidden)
        feats = {b: taps.features[b] for b in taps.blocks}
        return feats if fuse is None else fuse_features(feats, fuse)

    def features_and_noise(
        self, z_t: torch.Tensor, t: torch.Tensor, text_hidden: torch.Tensor, blocks: Sequence[str] = ("mid",),
        fuse: str = "sum",
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One full forward giving both the tapped features and the noise prediction (stage 2 with MSE)."""
        with feature_taps(self.unet, blocks, truncate=False) as taps:
            out = run_tapped(self.unet, taps, z_t, t, encoder_hidden_states=text_hidden)
        return fuse_features({b: taps.features[b] for b in taps.blocks}, fuse), out.sample

