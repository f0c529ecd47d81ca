"""Soft tokens (SoftREPA / AGSM): cost of the B x B training step and of the tokens at inference.

1. One SoftREPA training step (forward + backward of the tokens) over all B x B image-caption pairs as ONE
   batched denoiser call vs a Python loop of B^2 single-pair calls (same losses): median seconds and ratio.
2. Sampling seconds per image with and without the tokens installed (K extra context tokens per block, both
   CFG branches): median seconds and ratio (expected ~1).

Runs are interleaved (A, B, A, B ...) so load drift on a shared machine hits both alike; prints one JSON line.

    .venv/bin/python benchmarks/bench_soft_tokens.py [--model shapesworld] [--batch 8] [--repeats 3]
    .venv/bin/python benchmarks/bench_soft_tokens.py --quick   # tiny random SD, B = 2: a smoke run (seconds)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from dptune.methods.soft_tokens.inject import architecture_of, context_dims, denoiser_call, inject_tokens
from dptune.methods.soft_tokens.losses import pair_errors, softrepa_loss
from dptune.methods.soft_tokens.objective import SoftREPAObjective
from dptune.methods.soft_tokens.tokens import SoftTokens

# --quick: the same measurement on the tiny random SD; its ratios say nothing about a real model
QUICK = {"model": "tiny-random", "batch": 2, "repeats": 1, "steps": 2, "images": 2, "threads": 1}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help=f"smoke run, defaults {QUICK} (flags still override)")
    ap.add_argument("--model", default="shapesworld", help="'shapesworld' (shipped), 'tiny-random' or a folder")
    ap.add_argument("--batch", type=int, default=8, help="B image-caption pairs per training step")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=25, help="sampling steps per image")
    ap.add_argument("--images", type=int, default=8, help="images per sampling call")
    ap.add_argument("--threads", type=int, default=2)
    if ap.parse_known_args(argv)[0].quick:
        ap.set_defaults(**QUICK)
    return ap.parse_args(argv)


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def training_step_runs(unet, b: int):
    """(batched step, per-pair loop step) closures over one fixed batch of random latents and contexts."""
    gen = torch.Generator().manual_seed(0)
    hw = unet.config.sample_size
    inputs = {"z_t": torch.randn(b, unet.config.in_channels, hw, hw, generator=gen), "t": torch.full((b,), 500),
              "hidden": torch.randn(b, 16, unet.config.cross_attention_dim, generator=gen)}
    inputs["target"] = torch.randn(inputs["z_t"].shape, generator=gen)
    tokens = SoftTokens(architecture_of(unet), context_dims(unet), num_tokens=4)
    call = denoiser_call(unet)
    objective = SoftREPAObjective(unet, call, tokens)

    def batched():
        objective(inputs)[0].backward()

    def loop():  # B^2 calls of one pair each; the same loss from the stacked errors
        z, t, hidden, target = inputs["z_t"], inputs["t"], inputs["hidden"], inputs["target"]
        errors = torch.zeros(b, b)
        with inject_tokens(unet, tokens):
            for i in range(b):
                for j in range(b):
                    pred = call(z[i:i + 1], t[i:i + 1], hidden[j:j + 1], None)  # (1, C, h, w)
                    errors[i, j] = pair_errors(pred[None], target[i:i + 1])[0, 0]
        softrepa_loss(errors)[0].backward()

    return batched, loop


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    from dptune.methods import GenerationContext

    ctx = GenerationContext(args.model, steps=args.steps)
    pipe = ctx.pipeline()
    unet = pipe.pipe.unet
    batched, loop = training_step_runs(unet, args.batch)
    tokens = SoftTokens(architecture_of(unet), context_dims(unet), num_tokens=4).requires_grad_(False)
    prompts, seeds = ["two red circles"] * args.images, list(range(args.images))

    def plain():
        ctx.sample(pipe, prompts, seeds)

    def with_tokens():
        with inject_tokens(unet, tokens):
            ctx.sample(pipe, prompts, seeds)

    runs = {"train_batched": batched, "train_loop": loop, "sample_plain": plain, "sample_tokens": with_tokens}
    times: dict[str, list[float]] = {k: [] for k in runs}
    for fn in runs.values():  # warm-up
        fn()
    for _ in range(args.repeats):
        for name, fn in runs.items():
            times[name].append(_timed(fn))

    def ratio(a: str, b: str) -> float:
        return round(statistics.median(x / y for x, y in zip(times[a], times[b], strict=True)), 3)

    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "benchmark": "soft_tokens", "quick": args.quick, "model": args.model, "batch": args.batch,
        "pairs": args.batch ** 2, "threads": args.threads, "repeats": args.repeats, "sampling_steps": args.steps,
        "train_step_s": {"batched": round(med["train_batched"], 4), "per_pair_loop": round(med["train_loop"], 4)},
        "ratio_loop_vs_batched": ratio("train_loop", "train_batched"),
        "s_per_image": {"plain": round(med["sample_plain"] / args.images, 4),
                        "tokens": round(med["sample_tokens"] / args.images, 4)},
        "ratio_tokens_vs_plain": ratio("sample_tokens", "sample_plain"),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
