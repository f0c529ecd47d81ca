"""Small shared pieces for tests (not fixtures): the repository root, the tiny training config and adapter,
LoRA tensors by module, a fixed tiny U-Net input, random images, ShapesWorld generators with known verdicts,
the tiny base-model architecture. Test modules import these from here, never from each other."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent  # the repository root (tests live one or two levels below)

# the tiny ShapesWorld base architecture for train-base / pretrain-text tests
TINY_MODEL = dict(vae_channels=[8, 16, 16], vae_norm_groups=8, unet_channels=[16, 32, 32], unet_norm_groups=8,
                  text_hidden=16, text_heads=2, text_ffn=32, attention_head_dim=4)

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


def make_tiny_adapter(seed: int = 0, in_channels: int = 32, text_dim: int = 32):
    """A small random DiscriminativeAdapter for the tiny model's 32-channel blocks (eval mode)."""
    from dptune.adapter import AdapterConfig, DiscriminativeAdapter

    torch.manual_seed(seed)
    cfg = AdapterConfig(in_channels=in_channels, text_dim=text_dim, d_model=32, heads=4, ffn=64, num_queries=6,
                        num_match_queries=2)
    return DiscriminativeAdapter(cfg).eval()


def perfect_generator(calls=None):
    """A ShapesWorld 'method' that renders exactly what the prompt says (the seed picks the layout)."""
    import dptune.shapesworld as sw

    def generate(prompts, seeds):
        if calls is not None:
            calls.append(list(seeds))
        return np.stack([sw.render_prompt(p, seed=s) for p, s in zip(prompts, seeds, strict=True)]) / 255.0

    return generate


def relation_blind_generator():
    """Correct except that every relation is drawn the other way round."""
    import dptune.shapesworld as sw
    from dptune.shapesworld.grammar import OPPOSITE, PromptSpec, make_prompt

    def generate(prompts, seeds):
        out = []
        for p, s in zip(prompts, seeds, strict=True):
            spec = sw.parse_prompt(p).spec
            if spec.category == "relation":
                spec = PromptSpec("relation", spec.kinds, relation=OPPOSITE[spec.relation])
            out.append(sw.render_prompt(make_prompt(spec), seed=s))
        return np.stack(out).astype(np.float32) / 255.0

    return generate


class TinyViT(torch.nn.Module):
    """A random transformers ViT classifier (3 labels) behind the DCT classifier interface."""

    def __new__(cls, labels=("circle", "square", "triangle")):
        from transformers import ViTConfig, ViTForImageClassification

        from dptune.methods.dct.classifiers import HFImageClassifier

        torch.manual_seed(0)
        config = ViTConfig(image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=64, num_labels=len(labels), id2label=dict(enumerate(labels)),
                           label2id={n: i for i, n in enumerate(labels)})
        return HFImageClassifier(ViTForImageClassification(config).eval(), (16, 16), [0.5] * 3, [0.5] * 3)
