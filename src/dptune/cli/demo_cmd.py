"""``dptune demo``: DPT end to end on the shipped ShapesWorld model (README command one)."""

from __future__ import annotations

import argparse


def register(sub, name: str) -> argparse.ArgumentParser:
    from dptune.demo.run import DemoConfig
    from dptune.utils.config import add_dataclass_args

    p = sub.add_parser(name, help="run the ShapesWorld demo: probe, tune, self-correct, evaluate, report",
                       description="Stage 1 + stage 2 on the shipped tiny ShapesWorld SD, then base vs DPT vs "
                       "DPT + self-correction on ID and OOD prompts; writes <out-dir>/report.html.")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_dataclass_args(p, DemoConfig)
    return p


def run(args: argparse.Namespace) -> int:
    from dptune.demo.run import DemoConfig, run_demo
    from dptune.utils.config import merge_config

    cfg = merge_config(DemoConfig, args)
    results = run_demo(cfg, progress=not args.no_progress)
    from dptune.demo.report import judge_table, summary_lines

    header, rows, means = judge_table(results)
    print(" | ".join(header))
    for r in rows:
        print(" | ".join(r))
    for line in summary_lines(results, means):
        print(line.replace("**", ""))
    print(f"report: {cfg.out_dir}/report.html ({results['demo']['total_s']:.0f} s)")
    return 0
