"""``dptune eval``: compare registered methods on prompt sets and discriminative tasks.

Examples::

    dptune eval --model shapesworld --adapter run/final/adapter --lora run/final/lora --discriminative
    dptune eval --methods "base;dpt+sc:eta=0.2,window=0:1" --prompts shapesworld-ood geneval:meta.jsonl --clip DIR
    dptune eval --report-from runs/a/results.json runs/b/results.json --out runs/ab   # merge, no generation
"""

from __future__ import annotations

import argparse
import re

OPTION = re.compile(r"^[A-Za-z_]\w*=")  # "eta=0.2": an option, not a method name
HELP = "evaluate and compare methods (ShapesWorld judge, CLIP/BLIP/FID/IS, ITM/REC); writes results + reports"


def register(sub, name: str) -> argparse.ArgumentParser:
    from dptune.evaluation.suite import EvalConfig
    from dptune.utils.config import add_dataclass_args

    p = sub.add_parser(
        name,
        help=HELP,
        description=HELP + ". Precedence: defaults < --config file < flags. See docs/evaluation.md.",
    )
    p.add_argument("--config", default=None, help="YAML or JSON file of EvalConfig options")
    add_method_args(p, "default: base, + dpt with --lora, + dpt+sc with --adapter")
    p.add_argument(
        "--report-from",
        nargs="+",
        default=None,
        metavar="RESULTS_JSON",
        help="only (re)write the report from existing results.json files (merged side by side)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 on shared machines)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_dataclass_args(p, EvalConfig)
    return p


def add_method_args(p, default: str) -> None:
    """--methods and the weight flags that fill the methods' weight options (shared with `dptune compare`)."""
    p.add_argument("--methods", default=None, metavar="SPEC,...",
                   help="comma list of registered methods, each NAME or NAME:key=value,... e.g. "
                   f"'base,dpt+sc:eta=0.2,window=0:1' ({default}; `dptune methods` lists them)")
    p.add_argument("--adapter", default=None,
                   help="adapter folder for the methods that take one ('random' = untrained, smoke runs)")
    p.add_argument("--lora", default=None, help="stage-2 LoRA folder for the methods that take one")
    p.add_argument("--tokens", default=None, help="learned token file for the token methods that take one")
    p.add_argument("--weights", nargs="+", default=[], metavar="KEY=PATH",
                   help="any other weight option of the methods, e.g. token=runs/dct/final/learned_embeds.safetensors")


def weights_of(args: argparse.Namespace) -> dict[str, str | None]:
    """The weight options given on the command line: --adapter, --lora, --tokens and every --weights KEY=PATH."""
    weights = {"adapter": args.adapter, "lora": args.lora, "tokens": args.tokens}
    for item in args.weights:
        key, sep, path = item.partition("=")
        if not sep or not key or not path:
            raise ValueError(f"--weights takes KEY=PATH entries, e.g. token=DIR; got {item!r}")
        weights[key] = path
    return weights


def split_specs(text: str) -> list[str]:
    """'base,dpt+sc:eta=0.2,window=0:1,dpt' -> ['base', 'dpt+sc:eta=0.2,window=0:1', 'dpt'].

    A comma-separated part that starts with ``key=`` is an option of the method before it; ';' also separates.
    """
    specs: list[str] = []
    for part in (p.strip() for chunk in text.split(";") for p in chunk.split(",")):
        if not part:
            continue
        if OPTION.match(part) and specs and ":" in specs[-1]:
            specs[-1] += "," + part
        else:
            specs.append(part)
    return specs


def build_methods(args: argparse.Namespace) -> list:
    from dptune.methods import parse_method

    weights = weights_of(args)
    if args.methods:
        specs = split_specs(args.methods)
    else:
        specs = ["base"] + (["dpt"] if args.lora else []) + (["dpt+sc"] if args.adapter else [])
    return [parse_method(spec, weights) for spec in specs]


def _summary_lines(results: dict) -> list[str]:
    lines = []
    for m in results["methods"]:
        for s, res in m["generative"].items():
            for metric, block in res["summary"].items():
                if "." in metric:
                    continue
                c = block["overall"]
                scale = 100.0 if metric == "judge" else 1.0
                lines.append(
                    f"{m['name']:<10} {s:<18} {metric:<6} {c['mean'] * scale:6.1f} "
                    f"[{c['ci_low'] * scale:.1f}, {c['ci_high'] * scale:.1f}]  ({res['seconds']:.0f} s)"
                )
        for s, r in (m.get("discriminative") or {}).items():
            itm, rec = r.get("itm"), r.get("rec")
            parts = [
                f"ITM {itm['overall']:.1f}% (chance {itm['chance_i2t']:.0f})" if itm else "",
                f"REC P@1 {rec['p_at_1']:.1f}%" if rec else "",
            ]
            lines.append(f"{m['name']:<10} {s:<18} " + "  ".join(x for x in parts if x))
    return lines


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dptune.evaluation.suite import EvalConfig, evaluate_methods
    from dptune.utils.config import merge_config

    cfg = merge_config(EvalConfig, args, file=args.config)
    if args.report_from:
        from dptune.evaluation.report import merge_results, write_report

        results = merge_results(args.report_from, cfg.out)
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        paths = write_report(results, cfg.out, grid_prompts=cfg.grid_prompts)
        print(f"report: {paths['html']} and {paths['md']}")
        return 0
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    results = evaluate_methods(build_methods(args), cfg, progress=not args.no_progress)
    for line in _summary_lines(results):
        print(line)
    print(f"results: {Path(cfg.out) / 'results.json'}; report: {Path(cfg.out) / 'report.html'}")
    return 0
