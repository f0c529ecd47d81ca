"""Stage-1 training step: truncated U-Net forward (to the probed block) vs full U-Net forward, same batch.

Real-size SD 2.1-base U-Net (random weights, CPU) with the paper's default adapter (d=256, 110 queries) on the
mid block. A step = the six batched passes of DPTObjective (5 ITM + 1 REC) through the frozen U-Net, the
adapter forward/backward and an AdamW step. VAE and text encoding are identical in both variants and
excluded (inputs are precomputed). Interleaved repeats, medians; prints one JSON line.

    .venv/bin/python benchmarks/bench_stage1_step.py [--latent 32] [--batch 1] [--repeats 3]
    .venv/bin/python benchmarks/bench_stage1_step.py --quick   # tiny U-Net, 1 repeat: a smoke run (seconds)
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

# --quick: the same step on the tiny random U-Net; its ratio says nothing about SD, only that it runs
QUICK = {"repeats": 1, "latent": 8, "threads": 1, "version": "tiny"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help=f"smoke run, defaults {QUICK} (flags still override)")
    ap.add_argument("--latent", type=int, default=32, help="latent side (32 = 256 px, 64 = 512 px)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--version", default="sd-2-1-base", help="sd-2-1-base, sd-v1-5 or tiny (the test U-Net)")
    if ap.parse_known_args(argv)[0].quick:
        ap.set_defaults(**QUICK)
    return ap.parse_args(argv)


def _backbone(version: str) -> SDBackbone:
    from transformers import CLIPTextConfig, CLIPTextModel

    parts = tiny_components()
    if version == "tiny":
        return SDBackbone(**parts)
    unet = real_size_unet(version)
    unet.requires_grad_(False)
    # Only the U-Net is timed; a 1-layer text encoder with the real width stands in for the 340 M one.
    width, tok = unet.config.cross_attention_dim, parts["tokenizer"]
    parts["text_encoder"] = CLIPTextModel(CLIPTextConfig(
        hidden_size=width, intermediate_size=64, num_hidden_layers=1, num_attention_heads=8, vocab_size=len(tok),
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id))
    return SDBackbone(parts["vae"], parts["text_encoder"], parts["tokenizer"], unet, parts["scheduler"])


def _inputs(batch: int, latent: int, width: int) -> dict:
    """Precomputed DPTObjective inputs (the keys of training.objective.prepare_inputs), random values."""
    g = torch.Generator().manual_seed(0)
    t = torch.randint(0, 1000, (batch,), generator=g)
    return {"latents": torch.randn(4, batch, 4, latent, latent, generator=g),  # (4, B, 4, h, w)
            "text_hidden": torch.randn(4, batch, 77, width, generator=g),  # (4, B, L, D)
            "text_pooled": torch.randn(4, batch, width, generator=g),  # (4, B, D)
            "noise": torch.randn(batch, 4, latent, latent, generator=g),  # (B, 4, h, w)
            "t": t, "t_rec": t,  # the REC pass shares the ITM timestep (prepare_inputs without rec_t_range)
            "ref_box": torch.tensor([[0.5, 0.5, 0.2, 0.3]] * batch)}  # (B, 4)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    bb = _backbone(args.version)
    bb.unet.requires_grad_(False)
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
    result = {"benchmark": "stage1_step", "quick": args.quick, "model": f"{args.version} U-Net (random weights)",
              "latent": args.latent, "batch": args.batch, "unet_passes_per_step": 6 * args.batch,
              "threads": args.threads, "median_s": {k: round(statistics.median(v), 3) for k, v in times.items()},
              "ratio_truncated_vs_full": round(ratio, 3)}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
