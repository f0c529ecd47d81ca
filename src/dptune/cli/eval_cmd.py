"""``dptune eval``: compare methods (base / dpt / dpt+sc / custom) on prompt sets and discriminative tasks.

Examples::

    dptune eval --model shapesworld --adapter run/final/adapter --lora run/final/lora --discriminative
    dptune eval --methods base,dpt+sc --prompts shapesworld-ood geneval:evaluation_metadata.jsonl --clip DIR
    dptune eval --compare "a=model=shapesworld" "b=model=shapesworld,lora=DIR" --prompts shapesworld-id
    dptune eval --report-from runs/a/results.json runs/b/results.json --out runs/ab   # merge, no generation
"""

from __future__ import annotations

import argparse

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
    p.add_argument(
        "--model",
        default="shapesworld",
        help="diffusers folder, hub id, 'shapesworld' (shipped) or 'tiny-random' (default: shapesworld)",
    )
    p.add_argument(
        "--adapter", default=None, help="discriminative adapter folder ('random' = untrained, smoke runs)"
    )
    p.add_argument("--lora", default=None, help="stage-2 LoRA folder (pytorch_lora_weights.safetensors)")
    p.add_argument(
        "--eta", type=float, default=0.5, help="self-correction strength of +sc methods (paper: 0.5)"
    )
    p.add_argument(
        "--sc-window",
        default=None,
        metavar="START:END",
        help="trajectory window of self-correction, e.g. 0:1 = every step as in the paper (default: "
        "the dptune.sampling default)",
    )
    p.add_argument(
        "--methods",
        default=None,
        help="comma list of base, dpt, dpt+sc, base+sc (default: base, + dpt with --lora, + sc with "
        "--adapter)",
    )
    p.add_argument(
        "--compare",
        nargs="+",
        default=[],
        metavar="NAME=SPEC",
        help="extra methods, SPEC = key=value,... with keys model, adapter, lora, eta, blocks, fuse",
    )
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


def build_methods(args: argparse.Namespace) -> list:
    from dptune.evaluation.methods import default_method_names, parse_method, standard_methods

    methods = []
    if args.methods or not args.compare:
        names = (
            [n.strip() for n in args.methods.split(",") if n.strip()]
            if args.methods
            else default_method_names(args.adapter, args.lora)
        )
        sc = {"window": tuple(float(v) for v in args.sc_window.split(":"))} if args.sc_window else None
        methods += standard_methods(names, args.model, args.adapter, args.lora, args.eta, sc)
    methods += [parse_method(text) for text in args.compare]
    return methods


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
