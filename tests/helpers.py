"""Small shared pieces for tests (not fixtures): the tiny training config, LoRA tensors by module, a fixed
tiny U-Net input, random images."""

from __future__ import annotations

import numpy as np
import torch

# a training run on the tiny random SD (``tiny_pipeline_dir``) that takes about a second per few steps
TINY_TRAIN = dict(data_size=48, val_size=8, batch_size=4, adapter_d_model=32, adapter_ffn=64, adapter_heads=4,
                  lr=1e-3, log_every=1, validate_every=100, checkpoint_every=2)


def tiny_train_config(tmp_path, model, **kw):
    """``TrainConfig`` of a tiny run of ``model`` writing to ``<tmp_path>/run``; ``kw`` overrides."""
    from dptune.training import TrainConfig

    return TrainConfig(**{**TINY_TRAIN, "model": str(model), "out_dir": str(tmp_path / "run"), **kw})


def final_weights(result) -> dict[str, torch.Tensor]:
    """Trainable tensors of a finished run's last checkpoint (``result``: a ``TrainResult``)."""
    from dptune.utils.io import load_tensors

    return load_tensors(result.out_dir / "checkpoints" / f"step-{result.step:07d}" / "trainable.safetensors")


def random_images(n: int = 3, size: int = 24, seed: int = 0) -> np.ndarray:
    """uint8 (n, size, size, 3)."""
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def lora_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """peft LoRA tensors of ``model`` keyed ``<module>.lora_A`` / ``<module>.lora_B`` (adapter name dropped),
    so a model LoRA'd in training and one loaded from an exported folder compare key by key."""
    out = {}
    for name, p in model.named_parameters():
        if ".lora_" in name:
            module, rest = name.split(".lora_", 1)
            out[f"{module}.lora_{rest[0]}"] = p.detach()
    return out


def unet_output(unet, seed: int = 0) -> torch.Tensor:
    """The tiny U-Net's noise prediction on a fixed input: latents (2, 4, 8, 8), t = 10 and 600, text (2, 5, 32)."""
    g = torch.Generator().manual_seed(seed)
    x, text = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 5, 32, generator=g)
    with torch.no_grad():
        return unet(x, torch.tensor([10, 600]), encoder_hidden_states=text).sample  # (2, 4, 8, 8)
