"""LoRA for stage 2 (paper Sec. 3.2) via peft, saved in the format diffusers pipelines load.

The paper tunes the U-Net's cross-attention; ``add_text_encoder_lora`` is an extension (off by default) for
text encoders that cannot tell the captions apart, e.g. the shipped ShapesWorld model maps "left"/"right"
to nearly the same embedding, so no U-Net-side change can follow the relation word.

The frozen base may sit in half precision; LoRA weights are kept in fp32 (the diffusers LoRA recipe), and
only they (plus the adapter) are trained and saved.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from dptune.training.config import LORA_TARGETS

LORA_WEIGHTS = "pytorch_lora_weights.safetensors"
# CLIP text-tower attention projections (the diffusers LoRA training scripts' text-encoder targets)
TEXT_ENCODER_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
TEXT_ENCODER_MLP_TARGETS = ["fc1", "fc2"]  # the feed-forward layers, for more capacity


def add_lora(unet: nn.Module, rank: int = 4, targets: str = "cross", alpha: float | None = None) -> int:
    """Attach LoRA (rank ``rank``) to the U-Net's attention projections; return the LoRA parameter count.

    ``targets``: ``cross`` = ``attn2`` q/k/v/out only (the paper), ``all`` = self- and cross-attention
    (the official code).
    """
    if targets not in LORA_TARGETS:
        raise ValueError(f"unknown LoRA targets {targets!r}; choose from {sorted(LORA_TARGETS)}")
    from peft import LoraConfig

    unet.add_adapter(LoraConfig(r=rank, lora_alpha=alpha or rank, init_lora_weights="gaussian",
                                target_modules=LORA_TARGETS[targets]))
    n = _train_lora(unet)
    if n == 0:
        raise ValueError(f"LoRA targets {targets!r} matched no module of this U-Net (no attention layers?)")
    return n


def add_text_encoder_lora(text_encoder: nn.Module, rank: int = 4, alpha: float | None = None,
                          mlp: bool = False) -> int:
    """Attach LoRA to the CLIP text encoder's attention projections (``mlp``: and its feed-forward layers);
    return the LoRA parameter count."""
    from peft import LoraConfig, inject_adapter_in_model

    # peft directly: transformers' own add_adapter refuses peft < 0.22, the newest release here is 0.21
    config = LoraConfig(r=rank, lora_alpha=alpha or rank, init_lora_weights="gaussian",
                        target_modules=TEXT_ENCODER_TARGETS + (TEXT_ENCODER_MLP_TARGETS if mlp else []))
    inject_adapter_in_model(config, text_encoder)
    n = _train_lora(text_encoder)
    if n == 0:
        raise ValueError("text-encoder LoRA matched no q_proj/k_proj/v_proj/out_proj: not a CLIP text encoder")
    return n


def _train_lora(model: nn.Module) -> int:
    """Make the LoRA weights of ``model`` fp32 and trainable; return their count."""
    n = 0
    for name, p in model.named_parameters():
        if "lora_" in name:
            p.data = p.data.float()  # fp32 LoRA on a possibly half-precision base
            p.requires_grad_(True)
            n += p.numel()
    return n


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """LoRA weights (U-Net or text encoder) in diffusers' format (keys as ``pipe.load_lora_weights`` expects)."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    return convert_state_dict_to_diffusers(get_peft_model_state_dict(model))


def save_lora(unet: nn.Module, directory: str | os.PathLike, text_encoder: nn.Module | None = None) -> Path:
    """Write ``pytorch_lora_weights.safetensors`` into ``directory`` (call on a temp dir, then rename).

    With a LoRA'd ``text_encoder`` both sets go into the one file; ``pipe.load_lora_weights`` loads both.
    """
    from diffusers import StableDiffusionPipeline

    directory = Path(directory)
    te = lora_state_dict(text_encoder) if text_encoder is not None and has_lora(text_encoder) else None
    StableDiffusionPipeline.save_lora_weights(directory, unet_lora_layers=lora_state_dict(unet),
                                              text_encoder_lora_layers=te, weight_name=LORA_WEIGHTS,
                                              safe_serialization=True)
    return directory / LORA_WEIGHTS


def has_lora(model: nn.Module) -> bool:
    return any("lora_" in name for name, _ in model.named_parameters())
