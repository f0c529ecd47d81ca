"""``dptune generate``: text-to-image with optional DPT self-correction (paper Sec. 3.3, Eq. 9).

Writes one PNG per (prompt, seed), ``metadata.jsonl`` (prompt, seed and every setting, one line per image)
and ``grid.png`` (rows = prompts, columns = seeds) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

SCHEDULER_CHOICES = ("ddim", "pndm", "euler", "dpmpp")
PAPER_ETA = 0.5


def register(subparsers, name: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name,
        help="generate images, optionally self-corrected by a discriminative adapter",
        description="Stable Diffusion text-to-image. With --adapter, self-correction (paper Eq. 9) moves the "
        "latent along the adapter's matching-score gradient inside --window (eta 0.5 by default then).",
    )
    src = p.add_argument_group("prompts and seeds")
    src.add_argument("--prompt", action="append", default=[], metavar="TEXT", help="a prompt (repeatable)")
    src.add_argument(
        "--prompts", metavar="FILE", help="prompt file: one per line, or JSONL with a prompt/text field"
    )
    src.add_argument("--seeds", type=int, nargs="+", metavar="S", help="seeds, each used for every prompt")
    src.add_argument("--seed", type=int, default=0, help="first seed when --seeds is not given (default 0)")
    src.add_argument(
        "--num-images", type=int, default=1, help="images per prompt: seeds seed..seed+n-1 (default 1)"
    )
    _add_model_args(p.add_argument_group("model"))
    sampling = p.add_argument_group("sampling")
    sampling.add_argument(
        "--scheduler", choices=SCHEDULER_CHOICES, default="ddim", help="sampler (default ddim)"
    )
    sampling.add_argument("--steps", type=int, default=50, help="sampling steps (default 50)")
    sampling.add_argument(
        "--guidance", type=float, default=7.5, help="classifier-free guidance scale (default 7.5)"
    )
    sampling.add_argument(
        "--negative-prompt", default=None, help="negative prompt for the unconditional branch"
    )
    sampling.add_argument("--height", type=int, default=None, help="image height (default: the model's size)")
    sampling.add_argument("--width", type=int, default=None, help="image width (default: the model's size)")
    sampling.add_argument("--batch-size", type=int, default=4, help="images per forward batch (default 4)")
    _add_correction_args(p.add_argument_group("self-correction (paper Sec. 3.3)"))
    out = p.add_argument_group("output")
    out.add_argument("--out", default="generated", metavar="DIR", help="output folder (default ./generated)")
    out.add_argument(
        "--grid-max", type=int, default=64, help="at most this many images in grid.png (default 64)"
    )
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def _add_model_args(group) -> None:
    group.add_argument(
        "--model",
        default="shapesworld",
        help="diffusers folder, hub id, 'shapesworld' (shipped) or 'tiny-random' (default shapesworld)",
    )
    group.add_argument(
        "--adapter", metavar="DIR", help="discriminative adapter folder (enables self-correction)"
    )
    group.add_argument("--lora", metavar="DIR", help="stage-2 LoRA folder (pytorch_lora_weights.safetensors)")
    group.add_argument(
        "--blocks", nargs="+", default=["mid"], help="U-Net block(s) the adapter probes (default mid)"
    )
    group.add_argument("--fuse", choices=("sum", "concat"), default="sum", help="fusion of several blocks")
    group.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    group.add_argument(
        "--dtype",
        choices=("fp32", "fp16", "bf16"),
        default=None,
        help="model precision (default: fp16 on cuda, fp32 on cpu); the correction is fp32",
    )


def _add_correction_args(group) -> None:
    from dptune.sampling.config import DEFAULT_WINDOW

    group.add_argument(
        "--eta",
        type=float,
        default=None,
        help=f"guidance strength eta of Eq. 9; 0 = plain SD (default {PAPER_ETA} with --adapter, else 0)",
    )
    group.add_argument(
        "--window",
        type=float,
        nargs=2,
        default=list(DEFAULT_WINDOW),
        metavar=("START", "END"),
        help=f"trajectory fractions where the correction applies (default {DEFAULT_WINDOW[0]} "
        f"{DEFAULT_WINDOW[1]}; 0 1 = every step)",
    )
    group.add_argument(
        "--mode",
        choices=("paper", "official"),
        default="paper",
        help="paper: z_hat feeds both CFG branches and the step; official: the released code",
    )
    group.add_argument(
        "--normalize-grad", action="store_true", help="unit-RMS gradient per sample (use small eta)"
    )
    group.add_argument(
        "--grad-space",
        choices=("latent", "model_input"),
        default="latent",
        help="apply Eq. 9 to the scheduler's latent (default) or to the scaled U-Net input",
    )
    group.add_argument(
        "--sc-objective",
        choices=("match", "grounded"),
        default="match",
        help="match: the paper's matching score; grounded (extension): steer the REC boxes of the two "
        "objects of a prompt like 'X to the left of Y' (other prompts are left alone; use --normalize-grad "
        "--eta 0.1)",
    )
    group.add_argument(
        "--ground-t", type=int, default=100, help="grounded: timestep at which the REC head reads the image"
    )
    group.add_argument(
        "--grad-every",
        type=int,
        default=1,
        help="speed variant: recompute the gradient every k-th corrected step (default 1 = paper)",
    )


def _collect_prompts(args) -> list[str]:
    from dptune.sampling.prompts import read_prompts

    if any(not p.strip() for p in args.prompt):
        raise ValueError("empty --prompt; give the text to draw, e.g. --prompt 'a red circle'")
    prompts = [p.strip() for p in args.prompt]
    if args.prompts:
        prompts += read_prompts(args.prompts)
    if not prompts:
        raise ValueError(
            "no prompts; give --prompt TEXT (repeatable) or --prompts FILE (one prompt per line)"
        )
    return prompts


def _collect_seeds(args) -> list[int]:
    if args.seeds is not None:
        if args.num_images != 1:
            raise ValueError("give either --seeds S [S ...] or --seed S --num-images N, not both")
        return list(args.seeds)
    if args.num_images < 1:
        raise ValueError(f"--num-images must be >= 1; got {args.num_images}")
    return list(range(args.seed, args.seed + args.num_images))


def _correction(args):
    from dptune.sampling import SelfCorrectionConfig

    eta = args.eta if args.eta is not None else (PAPER_ETA if args.adapter else 0.0)
    if eta > 0 and not args.adapter:
        raise ValueError(f"--eta {eta} needs a discriminative adapter: add --adapter DIR (or use --eta 0)")
    return SelfCorrectionConfig(
        eta=eta,
        window=tuple(args.window),
        normalize_grad=args.normalize_grad,
        mode=args.mode,
        grad_space=args.grad_space,
        grad_every=args.grad_every,
        objective=args.sc_objective,
        ground_t=args.ground_t,
    )


def _check_args(args) -> None:
    for flag, value in (
        ("--batch-size", args.batch_size),
        ("--steps", args.steps),
        ("--grid-max", args.grid_max),
    ):
        if value < 1:
            raise ValueError(f"{flag} must be >= 1; got {value}")
    for flag, value in (("--adapter", args.adapter), ("--lora", args.lora)):
        if value and not Path(value).is_dir():
            what = (
                "save_adapter's folder with adapter_config.json" if flag == "--adapter" else "a lora/ folder"
            )
            raise FileNotFoundError(f"{flag} directory {value} does not exist; pass {what}")


def _warn_overlong(tokenizer, prompts: list[str]) -> None:
    from dptune.sampling.prompts import overlong_prompts

    long = overlong_prompts(tokenizer, prompts)
    if long:
        print(
            f"dptune generate: warning: {len(long)} prompt(s) exceed the tokenizer limit of "
            f"{tokenizer.model_max_length} tokens and are truncated, e.g. {long[0][:80]!r}",
            file=sys.stderr,
        )


def run(args: argparse.Namespace) -> int:
    import warnings

    import torch

    prompts, seeds = _collect_prompts(args), _collect_seeds(args)
    _check_args(args)
    correction = _correction(args)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = args.dtype or ("fp16" if str(device).startswith("cuda") else "fp32")
    from diffusers.utils import logging as diffusers_logging

    from dptune.sampling import DPTPipeline

    diffusers_logging.set_verbosity_error()  # our own one-line warnings replace diffusers' per-batch ones
    pipe = DPTPipeline.from_pretrained(
        args.model,
        adapter=args.adapter,
        lora=args.lora,
        blocks=args.blocks,
        fuse=args.fuse,
        device=device,
        dtype=dtype,
        scheduler=args.scheduler,
    )
    _warn_overlong(pipe.pipe.tokenizer, prompts)
    settings = _settings(args, correction, device, dtype, pipe)
    with warnings.catch_warnings():  # said once above, not once per batch
        warnings.filterwarnings("ignore", message=".*exceed the tokenizer limit.*")
        written = _generate_all(pipe, prompts, seeds, correction, settings, args)
    print(f"wrote {len(written)} images, metadata.jsonl and grid.png to {args.out}")
    return 0


def _settings(args, correction, device, dtype, pipe) -> dict:
    from dataclasses import asdict

    return {
        "model": str(args.model),
        "adapter": args.adapter,
        "lora": args.lora,
        "blocks": list(args.blocks),
        "scheduler": args.scheduler,
        "steps": args.steps,
        "guidance": args.guidance,
        "negative_prompt": args.negative_prompt,
        "height": args.height or pipe.default_size,
        "width": args.width or pipe.default_size,
        "device": str(device),
        "dtype": dtype,
        "correction": asdict(correction) | {"window": list(correction.window)},
    }


def _generate_all(pipe, prompts, seeds, correction, settings, args) -> list[dict]:
    from tqdm.auto import tqdm

    from dptune.sampling.prompts import make_jobs
    from dptune.utils.io import atomic_write

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs, records, images = make_jobs(prompts, seeds), [], []
    bar = tqdm(total=len(jobs), unit="img", desc="generate", disable=args.no_progress)
    for lo in range(0, len(jobs), args.batch_size):
        batch = jobs[lo : lo + args.batch_size]
        pil = pipe(
            [j.prompt for j in batch],
            seeds=[j.seed for j in batch],
            num_inference_steps=args.steps,
            guidance_scale=args.guidance,
            negative_prompt=args.negative_prompt,
            correction=correction,
            height=args.height,
            width=args.width,
            output_type="pil",
            progress=False,
        )
        for k, (job, image) in enumerate(zip(batch, pil, strict=True)):
            name = f"{job.stem}.png"
            atomic_write(out / name, lambda tmp, im=image: im.save(tmp, format="PNG"))
            trace = [[r["step"], r["score"][k]] for r in pipe.last_trace if not r["reused"]]
            records.append(
                {
                    "file": name,
                    "prompt": job.prompt,
                    "prompt_index": job.prompt_index,
                    "seed": job.seed,
                    **settings,
                    "adapter_score_trace": trace,
                }
            )
            images.append(image)
        bar.update(len(batch))
    bar.close()
    lines = "".join(json.dumps(r) + "\n" for r in records)
    atomic_write(out / "metadata.jsonl", lambda tmp: Path(tmp).write_text(lines, encoding="utf-8"))
    grid = make_grid(images[: args.grid_max], columns=len(seeds))
    atomic_write(out / "grid.png", lambda tmp: grid.save(tmp, format="PNG"))
    return records


def make_grid(images: list, columns: int):
    """Tile PIL images row-major into one image (columns capped at 16 so long seed lists stay viewable)."""
    from PIL import Image

    cols = max(1, min(columns, 16, len(images)))
    rows = math.ceil(len(images) / cols)
    w, h = images[0].size
    grid = Image.new("RGB", (cols * w, rows * h), color=(255, 255, 255))
    for i, im in enumerate(images):
        grid.paste(im.convert("RGB"), ((i % cols) * w, (i // cols) * h))
    return grid
