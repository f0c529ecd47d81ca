"""Self-correction strength sweep on ShapesWorld (paper Fig. 4b): judge accuracy by category for several eta,
with a stage-2 adapter + LoRA, same prompts and seeds for every eta. Prints one JSON line.

    .venv/bin/python experiments/sweep_eta.py --run runs/demo [--etas 0 0.1 0.5 1.0] [--window 0 1]
    .venv/bin/python experiments/sweep_eta.py --run runs/demo --objective grounded --normalize-grad \
        --window 0 0.5 --etas 0 0.05 0.1 0.2
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

CATEGORIES = ("colour", "count", "binding", "relation", "overall")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", default="runs/demo", help="a demo/tune output with tune/best/{adapter,lora}")
    ap.add_argument("--etas", type=float, nargs="+", default=[0.0, 0.1, 0.5, 1.0])
    ap.add_argument("--window", type=float, nargs=2, default=[0.0, 1.0], help="fraction of steps corrected")
    ap.add_argument("--normalize-grad", action="store_true", help="unit-RMS gradient (eta = RMS step, ~0.05-0.2)")
    ap.add_argument("--objective", default="match", choices=["match", "grounded"],
                    help="'grounded': the REC-box relation hinge (extension; relation prompts only)")
    ap.add_argument("--ground-t", type=int, default=100, help="'grounded': timestep the REC head reads")
    ap.add_argument("--prompts-per-category", type=int, default=16)
    ap.add_argument("--images-per-prompt", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0, help="prompt choice and image seeds (the demo's: 0)")
    ap.add_argument("--out", default="runs/sweep_eta")
    return ap.parse_args(argv)


def evaluate(args: argparse.Namespace) -> list[dict]:
    """One method per eta (same adapter and LoRA), evaluated by the library's suite; its ``methods`` list."""
    from dptune.evaluation.config import EvalConfig
    from dptune.evaluation.suite import evaluate_methods
    from dptune.methods import parse_method

    best = Path(args.run) / "tune" / "best"
    weights = {"adapter": str(best / "adapter"), "lora": str(best / "lora")}
    name = "dpt+gsc" if args.objective == "grounded" else "dpt+sc"
    window = f"{args.window[0]}:{args.window[1]}"
    extra = f",ground_t={args.ground_t}" if args.objective == "grounded" else ""
    runs = [parse_method(f"{name}:eta={eta},window={window},normalize_grad={args.normalize_grad}{extra}", weights,
                         label=f"eta {eta:g}") if eta > 0 else parse_method("dpt", weights, label=f"eta {eta:g}")
            for eta in args.etas]
    cfg = EvalConfig(prompts=["shapesworld-id", "shapesworld-ood"], prompts_per_category=args.prompts_per_category,
                     images_per_prompt=args.images_per_prompt, out=args.out, n_boot=500, seed=args.seed,
                     prompt_seed=args.seed)
    return evaluate_methods(runs, cfg, progress=False)["methods"]


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(2)
    table = {m["name"]: {s: {c: round(r["summary"]["judge"][c]["mean"], 3) for c in CATEGORIES}
                         for s, r in m["generative"].items()} for m in evaluate(args)}
    line = {"experiment": "sweep_eta", "run": args.run, "window": args.window,
            "normalize_grad": args.normalize_grad, "seed": args.seed, "objective": args.objective,
            "ground_t": args.ground_t, "judge": table}
    print(json.dumps(line))
    return line


if __name__ == "__main__":
    main()
