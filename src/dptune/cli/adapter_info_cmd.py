"""``dptune adapter-info``: build the default discriminative adapter for a U-Net block and count its parameters.

No weights are loaded: the probed block's channels and the text dimension come from the flags or from a
diffusers model directory's ``unet/config.json`` and ``text_encoder/config.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# SD 2.1-base at 512 px: the mid block gives 1280 x 8 x 8; the OpenCLIP ViT-H text tower's pooled output is 1024.
DEFAULT_IN_CHANNELS = 1280
DEFAULT_TEXT_DIM = 1024


def register(subparsers, name: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name,
        help="parameter count of the discriminative adapter for a U-Net block",
        description="Build the default discriminative adapter (paper B.3.2) for a probed U-Net block and print "
        "its parameter count by part. Default: SD 2.1-base mid block (1280 channels, text dim 1024).",
    )
    p.add_argument("--sd-config", metavar="DIR", help="diffusers model directory with unet/ and text_encoder/ configs")
    p.add_argument("--block", default="mid", help="probed block: down0..3, mid, up0..3 (with --sd-config)")
    p.add_argument("--in-channels", type=int, help="channels of the probed feature map (overrides --sd-config)")
    p.add_argument("--text-dim", type=int, help="pooled text-embedding dimension (overrides --sd-config)")
    p.add_argument("--pos-embedding", choices=("sine", "learned"), default="sine", help="position embedding")
    p.add_argument("--json", action="store_true", help="print the counts as JSON")
    return p


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; --sd-config must be a diffusers model directory")
    return json.loads(path.read_text(encoding="utf-8"))


def text_dim_from_config(text_cfg: dict) -> int:
    """Pooled text dimension: SD's CLIPTextModel pools without projection (hidden_size); a
    CLIPTextModelWithProjection exposes projection_dim."""
    if any("WithProjection" in a for a in text_cfg.get("architectures") or []):
        return int(text_cfg["projection_dim"])
    return int(text_cfg["hidden_size"])


def resolve_dims(args: argparse.Namespace) -> tuple[int, int, str]:
    """(in_channels, text_dim, source description) from the flags."""
    in_ch, text_dim, source = DEFAULT_IN_CHANNELS, DEFAULT_TEXT_DIM, "default: SD 2.1-base mid block"
    if args.sd_config:
        root = Path(args.sd_config)
        from dptune.backbone.taps import block_channels_from_config

        in_ch = block_channels_from_config(_read_json(root / "unet" / "config.json"), args.block)
        text_dim = text_dim_from_config(_read_json(root / "text_encoder" / "config.json"))
        source = f"{root} block {args.block}"
    if args.in_channels is not None:
        in_ch, source = args.in_channels, "flags"
    if args.text_dim is not None:
        text_dim, source = args.text_dim, "flags"
    return in_ch, text_dim, source


def run(args: argparse.Namespace) -> int:
    from dptune.adapter import AdapterConfig, DiscriminativeAdapter, parameter_counts

    in_ch, text_dim, source = resolve_dims(args)
    cfg = AdapterConfig(in_channels=in_ch, text_dim=text_dim, pos_embedding=args.pos_embedding)
    counts = parameter_counts(DiscriminativeAdapter(cfg))
    if args.json:
        print(json.dumps({"in_channels": in_ch, "text_dim": text_dim, "parameters": counts}, indent=2))
        return 0
    print(f"discriminative adapter for in_channels={in_ch}, text_dim={text_dim} ({source})")
    print(
        f"d_model={cfg.d_model} heads={cfg.heads} ffn={cfg.ffn} enc/dec layers={cfg.enc_layers}/{cfg.dec_layers} "
        f"queries={cfg.num_queries} (match {cfg.num_match_queries}) pos={cfg.pos_embedding}"
    )
    for part, n in counts.items():
        print(f"  {part:<11} {n:>12,}")
    return 0
