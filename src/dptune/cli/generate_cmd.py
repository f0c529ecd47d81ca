"""``dptune generate``: text-to-image with any registered method (``dptune methods`` lists them).

Writes one PNG per (prompt, seed), ``metadata.jsonl`` (prompt, seed, the method's resolved config and every
setting, one line per image) and ``grid.png`` (rows = prompts, columns = seeds) into ``--out``.

    dptune generate --method dpt+sc:eta=0.5 --adapter RUN/final/adapter --lora RUN/final/lora --prompt "..."
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

SCHEDULER_CHOICES = ("ddim", "pndm", "euler", "dpmpp")


def register(subparsers, name: str) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        name, help="generate images with a registered method (base, dpt, dpt+sc, dpt+gsc, ...)",
        description="Text-to-image with one method. --method NAME[:key=value,...] picks it (`dptune methods "
        "NAME` lists its options); --adapter/--lora fill its weight options.")
    src = p.add_argument_group("prompts and seeds")
    src.add_argument("--prompt", action="append", default=[], metavar="TEXT", help="a prompt (repeatable)")
    src.add_argument("--prompts", metavar="FILE", help="prompt file: one per line, or JSONL with a prompt field")
    src.add_argument("--seeds", type=int, nargs="+", metavar="S", help="seeds, each used for every prompt")
    src.add_argument("--seed", type=int, default=0, help="first seed when --seeds is not given (default 0)")
    src.add_argument("--num-images", type=int, default=1, help="images per prompt: seeds seed..seed+n-1")
    m = p.add_argument_group("method and model")
    m.add_argument("--method", default="base", metavar="NAME[:K=V,...]",
                   help="registered method and its options, e.g. dpt+sc:eta=0.5,window=0:1 (default base)")
    m.add_argument("--model", default="shapesworld",
                   help="diffusers folder, hub id, 'shapesworld' (shipped) or 'tiny-random' (default shapesworld)")
    m.add_argument("--adapter", metavar="DIR", help="discriminative adapter folder (dpt+sc, dpt+gsc)")
    m.add_argument("--lora", metavar="DIR", help="stage-2 LoRA folder (pytorch_lora_weights.safetensors)")
    m.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    m.add_argument("--dtype", choices=("fp32", "fp16", "bf16"), default=None,
                   help="model precision (default: fp16 on cuda, fp32 on cpu); guidance runs in fp32")
    s = p.add_argument_group("sampling")
    s.add_argument("--scheduler", choices=SCHEDULER_CHOICES, default="ddim", help="sampler (default ddim)")
    s.add_argument("--steps", type=int, default=None, help="sampling steps (default: 25 shipped model, else 50)")
    s.add_argument("--guidance", type=float, default=None, help="CFG scale (default: 4 shipped model, else 7.5)")
    s.add_argument("--negative-prompt", default=None, help="negative prompt for the unconditional branch")
    s.add_argument("--size", type=int, default=None, help="image height and width (default: the model's size)")
    s.add_argument("--batch-size", type=int, default=4, help="images per forward batch (default 4)")
    out = p.add_argument_group("output")
    out.add_argument("--out", default="generated", metavar="DIR", help="output folder (default ./generated)")
    out.add_argument("--grid-max", type=int, default=64, help="at most this many images in grid.png")
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


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


def _check_args(args) -> None:
    for flag, value in (("--batch-size", args.batch_size), ("--steps", args.steps or 1),
                        ("--grid-max", args.grid_max)):
        if value < 1:
            raise ValueError(f"{flag} must be >= 1; got {value}")


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

    from dptune.methods import GenerationContext, parse_method

    prompts, seeds = _collect_prompts(args), _collect_seeds(args)
    _check_args(args)
    method = parse_method(args.method, weights={"adapter": args.adapter, "lora": args.lora})
    method.check_weights()  # before loading a large model
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = args.dtype or ("fp16" if str(device).startswith("cuda") else "fp32")
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # our own one-line warnings replace diffusers' per-batch ones
    ctx = GenerationContext(args.model, device, args.steps, args.guidance, args.scheduler, dtype,
                            args.negative_prompt, args.size)
    generate = method.method.generator(method.config, ctx)
    _warn_overlong(ctx.backbone(getattr(method.config, "lora", None)).tokenizer, prompts)
    settings = {"method": method.to_json(), "model": str(args.model), "scheduler": args.scheduler,
                "steps": ctx.steps, "guidance": ctx.guidance, "negative_prompt": args.negative_prompt,
                "size": args.size, "device": str(device), "dtype": dtype, "generator": generate.description}
    with warnings.catch_warnings():  # said once above, not once per batch
        warnings.filterwarnings("ignore", message=".*exceed the tokenizer limit.*")
        written = _generate_all(generate, prompts, seeds, settings, args)
    print(f"wrote {len(written)} images, metadata.jsonl and grid.png to {args.out}")
    return 0


def _generate_all(generate, prompts, seeds, settings, args) -> list[dict]:
    from PIL import Image
    from tqdm.auto import tqdm

    from dptune.sampling.prompts import make_jobs
    from dptune.utils.io import atomic_write

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs, records, images = make_jobs(prompts, seeds), [], []
    bar = tqdm(total=len(jobs), unit="img", desc="generate", disable=args.no_progress)
    for lo in range(0, len(jobs), args.batch_size):
        batch = jobs[lo : lo + args.batch_size]
        arrays = generate([j.prompt for j in batch], [j.seed for j in batch])  # (b, H, W, 3) in [0, 1]
        trace_of = getattr(getattr(generate, "pipe", None), "last_trace", [])
        for k, (job, array) in enumerate(zip(batch, arrays, strict=True)):
            image = Image.fromarray((array * 255).round().clip(0, 255).astype("uint8"))
            name = f"{job.stem}.png"
            atomic_write(out / name, lambda tmp, im=image: im.save(tmp, format="PNG"))
            trace = [[r["step"], r["score"][k]] for r in trace_of if not r["reused"] and k < len(r["score"])]
            records.append({"file": name, "prompt": job.prompt, "prompt_index": job.prompt_index,
                            "seed": job.seed, **settings, "guidance_score_trace": trace})
            images.append(image)
        bar.update(len(batch))
    bar.close()
    lines = "".join(json.dumps(r) + "\n" for r in records)
    atomic_write(out / "metadata.jsonl", lambda tmp: Path(tmp).write_text(lines, encoding="utf-8"))
    grid = make_grid(images[: args.grid_max], columns=len(seeds))
    atomic_write(out / "grid.png", lambda tmp: grid.save(tmp, format="PNG"))
    return records


def make_grid(images: list, columns: int):
    """Tile PIL images row-major into one image (columns capped at 16 so long seed lists stay viewable); small
    images are enlarged by pixel repetition to at least 128 px, so 32 x 32 samples are not postage stamps."""
    import numpy as np
    from PIL import Image

    from dptune.utils.images import enlarge

    images = [Image.fromarray(enlarge(np.asarray(im.convert("RGB")))) for im in images]
    cols = max(1, min(columns, 16, len(images)))
    rows = math.ceil(len(images) / cols)
    w, h = images[0].size
    grid = Image.new("RGB", (cols * w, rows * h), color=(255, 255, 255))
    for i, im in enumerate(images):
        grid.paste(im.convert("RGB"), ((i % cols) * w, (i // cols) * h))
    return grid
