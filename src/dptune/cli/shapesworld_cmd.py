"""``dptune shapesworld``: train the tiny base SD, score a model with the exact judge, render samples."""

from __future__ import annotations

import argparse


def register(sub, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="ShapesWorld: train-base, pretrain-text, score (exact judge), render samples")
    inner = p.add_subparsers(dest="sw_command", metavar="SUBCOMMAND", required=True)
    # train-base owns its options (one per TrainBaseConfig field); they are parsed there, lazily, so that
    # `dptune --help` does not import torch. `dptune shapesworld train-base --help` lists them.
    tb = inner.add_parser("train-base", add_help=False, help="train the tiny ShapesWorld SD from scratch "
                          "(resumable; --help lists its options)")
    tb.set_defaults(_pass_through=True)
    pt = inner.add_parser("pretrain-text", add_help=False, help="pretrain the text encoder contrastively on "
                          "ShapesWorld, CLIP-style with hard negatives (for train-base --init-text-encoder; "
                          "--help lists its options)")
    pt.set_defaults(_pass_through=True)
    sc = inner.add_parser("score", help="judge accuracy per category on ID, OOD and paraphrase prompts (the "
                          "model card's numbers)")
    sc.add_argument("--model", default="shapesworld", help="diffusers folder or 'shapesworld'")
    sc.add_argument("--lora", default=None, help="optional stage-2 LoRA folder")
    sc.add_argument("--prompts-per-category", type=int, default=50, help="prompts per category and split")
    sc.add_argument("--images-per-prompt", type=int, default=1, help="images per prompt")
    sc.add_argument("--steps", type=int, default=25, help="DDIM steps (shipped default 25)")
    sc.add_argument("--guidance", type=float, default=4.0, help="guidance scale (shipped default 4)")
    sc.add_argument("--seed", type=int, default=0, help="base seed")
    sc.add_argument("--splits", default="id,ood,paraphrase", help="comma-separated prompt splits: id (training "
                    "compositions), ood (held-out ones), paraphrase (the id prompts in unseen wordings)")
    sc.add_argument("--out", default="runs/shapesworld-score", help="output folder (results.json, report)")
    tc = inner.add_parser("text-check", help="how far the text encoder puts a caption from its hard-negative "
                          "edit, per edit kind (an edit it cannot see, DPT cannot fix)")
    tc.add_argument("--model", default="shapesworld", help="diffusers folder or 'shapesworld'")
    tc.add_argument("--lora", default=None, help="optional stage-2 LoRA folder (e.g. with a text-encoder LoRA)")
    tc.add_argument("--n", type=int, default=64, help="caption pairs per edit kind")
    tc.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    rd = inner.add_parser("render", help="write sample renders + captions of a split (to look at the world)")
    rd.add_argument("--split", default="train", choices=["train", "id", "ood"])
    rd.add_argument("--n", type=int, default=16)
    rd.add_argument("--out", default="runs/shapesworld-samples")
    return p


def run(args: argparse.Namespace) -> int:
    return {"train-base": _train_base, "pretrain-text": _pretrain_text, "score": _score,
            "text-check": _text_check, "render": _render}[args.sw_command](args)


def _train_base(args) -> int:
    from dptune.shapesworld.train_base import main

    return main(args.extra, prog="dptune shapesworld")


def _pretrain_text(args) -> int:
    from dptune.shapesworld.pretrain_text import main

    return main(args.extra, prog="dptune shapesworld")


def _score(args) -> int:
    from dptune.evaluation.suite import EvalConfig, evaluate_methods
    from dptune.methods import parse_method

    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    cfg = EvalConfig(prompts=[f"shapesworld-{s}" for s in splits], prompts_per_category=args.prompts_per_category,
                     images_per_prompt=args.images_per_prompt, seed=args.seed, model=args.model, steps=args.steps,
                     guidance=args.guidance, out=args.out)
    run = parse_method("dpt", {"lora": args.lora}, label="lora") if args.lora else parse_method("base")
    results = evaluate_methods([run], cfg)
    print("split | colour | count | binding | relation | overall  (95% bootstrap intervals over prompts)")
    for set_name, res in results["methods"][0]["generative"].items():
        block = res["summary"]["judge"]
        cells = [f"{block[c]['mean']:.3f} [{block[c]['ci_low']:.2f}, {block[c]['ci_high']:.2f}]"
                 for c in ("colour", "count", "binding", "relation", "overall")]
        print(" | ".join([set_name, *cells]))
    print(f"report: {args.out}/report.html")
    return 0


def _text_check(args) -> int:
    from dptune.backbone import ddim_pipeline, load_backbone
    from dptune.evaluation.text_check import edit_separability, format_table
    from dptune.shapesworld.eval_hooks import shapesworld_edit_pairs

    if args.n < 1:
        raise ValueError("--n must be >= 1")
    if args.lora:  # before loading the model: a mistyped folder fails at once
        from dptune.backbone.lora_loading import existing_dir

        existing_dir(args.lora, "LoRA", "pass the lora/ folder of a `dptune tune` checkpoint")
    backbone = load_backbone(args.model)
    if args.lora:
        from dptune.backbone.lora_loading import load_lora_into

        load_lora_into(ddim_pipeline(backbone), args.lora)  # loads into the backbone's own modules
    results = edit_separability(backbone, shapesworld_edit_pairs(args.n))
    print(format_table(results))
    if args.json:
        from dptune.utils.io import save_json

        save_json(args.json, results)
    return 0


def _render(args) -> int:
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from dptune.shapesworld import ShapesWorldDataset

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ds = ShapesWorldDataset(args.split, size=args.n, seed=0)
    lines = []
    for i in range(args.n):
        s = ds[i]
        img = ((s.image.permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
        Image.fromarray(img).resize((128, 128), Image.NEAREST).save(out / f"{i:03d}.png")
        lines.append(f"{i:03d}.png\t{s.caption}\t(hard negative: {s.hn_caption})")
    (out / "captions.tsv").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.n} renders and captions.tsv to {out}")
    return 0
