"""``dptune info``: versions, and for a model its probe-able blocks with channels and feature sizes."""

from __future__ import annotations

import argparse


def register(sub, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="show versions and a model's U-Net blocks (feature taps)")
    p.add_argument("--model", default=None,
                   help="diffusers folder, hub id, 'shapesworld' (shipped) or 'tiny-random'; omit for versions only")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    return p


def run(args: argparse.Namespace) -> int:
    import diffusers
    import torch
    import transformers

    import dptune

    print(f"dptune {dptune.__version__} | torch {torch.__version__} | diffusers {diffusers.__version__} | "
          f"transformers {transformers.__version__} | cuda: {torch.cuda.is_available()}")
    if args.model is None:
        return 0
    from dptune.backbone import load_backbone

    bb = load_backbone(args.model, device=_device(args.device))
    print(f"model {args.model}: image {bb.image_size}px, latent {bb.latent_size}x{bb.latent_size}, "
          f"text dim {bb.text_dim}, {sum(p.numel() for p in bb.unet.parameters()) / 1e6:.2f} M U-Net params")
    z = torch.zeros(1, bb.unet.config.in_channels, bb.latent_size, bb.latent_size, device=bb.device)
    with torch.no_grad():
        text = bb.encode_text([""]).hidden
        feats = bb.features(z, torch.tensor([500], device=bb.device), text, bb.blocks, fuse=None, truncate=False)
    print(f"{'block':<6} {'channels':>8} {'size':>8}")
    for name, f in feats.items():
        print(f"{name:<6} {f.shape[1]:>8} {f.shape[2]:>4}x{f.shape[3]}")
    return 0


def _device(name: str):
    """A torch device this machine has, or one clear error naming the choices."""
    import torch

    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name!r} is not a torch device; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: this torch build has no CUDA device; use --device cpu")
    return device
