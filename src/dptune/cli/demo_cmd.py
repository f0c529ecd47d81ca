"""``dptune demo``: DPT end to end on the shipped ShapesWorld model (README command one)."""

from __future__ import annotations

import argparse


def register(sub, name: str) -> argparse.ArgumentParser:
    from dptune.demo.run import DemoConfig
    from dptune.utils.config import add_dataclass_args

    p = sub.add_parser(name, help="run the ShapesWorld demo: every method trained, generated, judged, compared",
                       description="DPT stages 1 + 2 on the shipped tiny ShapesWorld SD and every other registered "
                       "method's demo training, then all methods on the same ID and OOD prompts and seeds; writes "
                       "<out-dir>/report.html and the comparison table <out-dir>/comparison.md.")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_dataclass_args(p, DemoConfig)
    return p


def run(args: argparse.Namespace) -> int:
    from dptune.demo.run import DemoConfig, run_demo
    from dptune.utils.config import merge_config

    cfg = merge_config(DemoConfig, args)
    results = run_demo(cfg, progress=not args.no_progress)
    from dptune.demo.report import judge_table, summary_lines
    from dptune.evaluation.compare import comparison_rows, format_table

    _, _, means = judge_table(results)
    for line in summary_lines(results, means):
        print(line.replace("**", ""))
    print("\nJudge accuracy % [95% Wilson interval] per category, cost per image and of training:")
    print(format_table(comparison_rows(results)))
    print(f"report: {cfg.out_dir}/report.html, table: {cfg.out_dir}/comparison.md "
          f"({results['demo']['total_s']:.0f} s)")
    return 0
