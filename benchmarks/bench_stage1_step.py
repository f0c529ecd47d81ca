"""Stage-1 training step: truncated U-Net forward (to the probed block) vs full U-Net forward, same batch.

Real-size SD 2.1-base U-Net (random weights, CPU) with the paper's default adapter (d=256, 110 queries) on the
mid block. A step = the six batched passes of DPTObjective (5 ITM + 1 REC) through the frozen U-Net, the
adapter forward/backward and an AdamW step. VAE and text encoding are identical in both variants and
excluded (inputs are precomputed). Interleaved repeats, medians; prints one JSON line.

    .venv/bin/python benchmarks/bench_stage1_step.py [--latent 32] [--batch 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from dptune.adapter import AdapterConfig, DiscriminativeAdapter, DPTProbe
from dptune.backbone import SDBackbone
from dptune.backbone.tiny import real_size_unet, tiny_components
from dptune.training.objective import DPTObjective


def _backbone(version: str) -> SDBackbone:
    from transformers import CLIPTextConfig, CLIPTextModel

    parts = tiny_components()
    unet = real_size_unet(version)
    unet.requires_grad_(False)
    # Only the U-Net is timed; a 1-layer text encoder with the real width stands in for the 340 M one.
    width = unet.config.cross_attention_dim
    parts["text_encoder"] = CLIPTextModel(CLIPTextConfig(hidden_size=width, intermediate_size=64, num_hidden_layers=1,
                                                         num_attention_heads=8, vocab_size=len(parts["tokenizer"])))
    return SDBackbone(parts["vae"], parts["text_encoder"], parts["tokenizer"], unet, parts["scheduler"])


def _inputs(batch: int, latent: int, width: int) -> dict:
    g = torch.Generator().manual_seed(0)
    return {"latents": torch.randn(4, batch, 4, latent, latent, generator=g),
            "text_hidden": torch.randn(4, batch, 77, width, generator=g),
            "text_pooled": torch.randn(4, batch, width, generator=g), "noise": torch.randn(batch, 4, latent, latent),
            "t": torch.randint(0, 1000, (batch,), generator=g), "ref_box": torch.tensor([[0.5, 0.5, 0.2, 0.3]] * batch)}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latent", type=int, default=32, help="latent side (32 = 256 px, 64 = 512 px)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--version", default="sd-2-1-base")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    bb = _backbone(args.version)
    adapter = DiscriminativeAdapter(AdapterConfig(in_channels=bb.block_channels("mid"), text_dim=bb.text_dim))
    inputs = _inputs(args.batch, args.latent, bb.text_dim)
    objectives = {name: DPTObjective(DPTProbe(bb, adapter, ["mid"], truncate=trunc))
                  for name, trunc in (("truncated", True), ("full", False))}
    opt = torch.optim.AdamW(adapter.parameters(), lr=1e-4)

    def step(obj):
        total, _ = obj(inputs)
        total.backward()
        opt.step()
        opt.zero_grad()

    times = {k: [] for k in objectives}
    for obj in objectives.values():  # warm-up
        step(obj)
    for _ in range(args.repeats):
        for name, obj in objectives.items():
            t0 = time.perf_counter()
            step(obj)
            times[name].append(time.perf_counter() - t0)
    ratio = statistics.median(t / f for t, f in zip(times["truncated"], times["full"], strict=True))
    result = {"benchmark": "stage1_step", "model": f"{args.version} U-Net (random weights)", "latent": args.latent,
              "batch": args.batch, "unet_passes_per_step": 6 * args.batch, "threads": args.threads,
              "median_s": {k: round(statistics.median(v), 3) for k, v in times.items()},
              "ratio_truncated_vs_full": round(ratio, 3)}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
