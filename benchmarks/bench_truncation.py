"""Truncated U-Net forward vs full forward on the real-size SD 2.1-base U-Net (random weights, CPU, batch 1).

Interleaves full / truncated-at-mid / truncated-at-up1 runs so drift on a shared machine hits all equally,
and prints one JSON line with median times and median per-round ratios.

    .venv/bin/python benchmarks/bench_truncation.py [--repeats 5] [--latent 64] [--threads 2]
    .venv/bin/python benchmarks/bench_truncation.py --quick   # tiny U-Net, 1 repeat: a smoke run (seconds)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from dptune.backbone import feature_taps, run_tapped
from dptune.backbone.tiny import real_size_unet, tiny_components

# --quick: the same measurement on the tiny random U-Net; its ratios say nothing about SD, only that it runs
QUICK = {"repeats": 1, "latent": 8, "threads": 1, "version": "tiny"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help=f"smoke run, defaults {QUICK} (flags still override)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--latent", type=int, default=64, help="latent side (64 = 512 px images)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--version", default="sd-2-1-base", help="sd-2-1-base, sd-v1-5 or tiny (the test U-Net)")
    if ap.parse_known_args(argv)[0].quick:
        ap.set_defaults(**QUICK)
    return ap.parse_args(argv)


def build_unet(version: str):
    """The U-Net to time: a real-size one with random weights, or the tiny test U-Net."""
    return tiny_components()["unet"] if version == "tiny" else real_size_unet(version)


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    unet = build_unet(args.version)
    z = torch.randn(1, 4, args.latent, args.latent)  # (1, 4, h, w)
    t = torch.tensor([500])
    text = torch.randn(1, 77, unet.config.cross_attention_dim)  # (1, L, D)

    def full():
        unet(z, t, encoder_hidden_states=text)

    def truncated(block):
        with feature_taps(unet, [block]) as taps:
            run_tapped(unet, taps, z, t, encoder_hidden_states=text)

    runs = {"full": full, "mid": lambda: truncated("mid"), "up1": lambda: truncated("up1")}
    times: dict[str, list[float]] = {k: [] for k in runs}
    with torch.no_grad():
        for fn in runs.values():  # warm-up
            fn()
        for _ in range(args.repeats):
            for name, fn in runs.items():
                times[name].append(_timed(fn))
    ratio = {k: statistics.median(a / f for a, f in zip(times[k], times["full"], strict=True)) for k in ("mid", "up1")}
    result = {
        "benchmark": "truncation",
        "quick": args.quick,
        "model": f"{args.version} U-Net (random weights)",
        "latent": args.latent,
        "batch": 1,
        "threads": args.threads,
        "repeats": args.repeats,
        "median_s": {k: round(statistics.median(v), 4) for k, v in times.items()},
        "ratio_mid_vs_full": round(ratio["mid"], 3),
        "ratio_up1_vs_full": round(ratio["up1"], 3),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
