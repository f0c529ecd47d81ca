"""``dptune compare``: every registered method (or ``--methods``) on the same prompts, seeds and judge, in one
table: accuracy per category with Wilson intervals, seconds per image, training time, trained parameters.

    dptune compare --adapter runs/demo/tune/best/adapter --lora runs/demo/tune/best/lora
    dptune compare --methods base,dpt+gsc --adapter A --lora L --prompts shapesworld-ood
"""

from __future__ import annotations

import argparse

HELP = "compare methods side by side (judge accuracy per category, cost per image, training cost)"


def register(sub, name: str) -> argparse.ArgumentParser:
    from dptune.cli.eval_cmd import add_method_args
    from dptune.evaluation.config import EvalConfig
    from dptune.utils.config import add_dataclass_args

    p = sub.add_parser(name, help=HELP, description=HELP + ". Writes comparison.{md,csv,json} and the report.")
    p.add_argument("--config", default=None, help="YAML or JSON file of EvalConfig options")
    add_method_args(p, "default: every registered method whose weights are given; the others are listed as "
                    "skipped with the command that trains them")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_dataclass_args(p, EvalConfig, skip=("out",))
    p.add_argument("--out", default="runs/compare", help="output folder (default runs/compare)")
    return p


def default_runs(weights: dict) -> tuple[list, list[str]]:
    """Every registered method that can run with ``weights``; notes for the ones that cannot."""
    from dptune.methods import methods, parse_method

    runs, skipped = [], []
    for name in methods():
        try:
            run = parse_method(name, weights)
            run.check_weights()
        except (ValueError, FileNotFoundError) as e:
            skipped.append(f"skipped {name}: {e}")
            continue
        runs.append(run)
    return runs, skipped


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dptune.cli.eval_cmd import build_methods, weights_of
    from dptune.evaluation.compare import comparison_rows, format_table, write_comparison
    from dptune.evaluation.config import EvalConfig
    from dptune.evaluation.suite import evaluate_methods
    from dptune.utils.config import merge_config

    cfg = merge_config(EvalConfig, args, file=args.config)
    if args.methods:
        runs, skipped = build_methods(args), []
    else:
        runs, skipped = default_runs(weights_of(args))
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    results = evaluate_methods(runs, cfg, progress=not args.no_progress)
    paths = write_comparison(results, cfg.out)
    print(format_table(comparison_rows(results)))
    for line in skipped:
        print(line)
    print(f"comparison: {paths['md']} (.csv, .json); report: {Path(cfg.out) / 'report.html'}")
    return 0
