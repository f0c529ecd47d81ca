"""LoRA on the U-Net for stage 2 (paper Sec. 3.2) via peft, saved in the format diffusers pipelines load.

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


def add_lora(unet: nn.Module, rank: int = 4, targets: str = "cross", alpha: float | None = None) -> int:
    """Attach LoRA (rank ``rank``) to the U-Net's attention projections; return the LoRA parameter count.

    ``targets``: ``cross`` = ``attn2`` q/k/v/out only (the paper), ``all`` = self- and cross-attention
    (the official code).
    """
    from peft import LoraConfig

    if targets not in LORA_TARGETS:
        raise ValueError(f"unknown LoRA targets {targets!r}; choose from {sorted(LORA_TARGETS)}")
    config = LoraConfig(r=rank, lora_alpha=alpha or rank, init_lora_weights="gaussian",
                        target_modules=LORA_TARGETS[targets])
    unet.add_adapter(config)
    n = 0
    for name, p in unet.named_parameters():
        if "lora_" in name:
            p.data = p.data.float()  # fp32 LoRA on a possibly half-precision base
            p.requires_grad_(True)
            n += p.numel()
    if n == 0:
        raise ValueError(f"LoRA targets {targets!r} matched no module of this U-Net (no attention layers?)")
    return n


def lora_state_dict(unet: nn.Module) -> dict[str, torch.Tensor]:
    """LoRA weights in diffusers' format (keys as ``pipe.load_lora_weights`` expects)."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    return convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))


def save_lora(unet: nn.Module, directory: str | os.PathLike) -> Path:
    """Write ``pytorch_lora_weights.safetensors`` into ``directory`` (call on a temp dir, then rename)."""
    from diffusers import StableDiffusionPipeline

    directory = Path(directory)
    StableDiffusionPipeline.save_lora_weights(directory, unet_lora_layers=lora_state_dict(unet),
                                              weight_name=LORA_WEIGHTS, safe_serialization=True)
    return directory / LORA_WEIGHTS


def has_lora(unet: nn.Module) -> bool:
    return any("lora_" in name for name, _ in unet.named_parameters())
