"""``dptune probe`` (stage 1) and ``dptune tune`` (stage 2): every TrainConfig field is a flag."""

from __future__ import annotations

import argparse
import os

HELP = {
    "probe": "stage 1: train the discriminative adapter on a frozen SD (ITM + REC)",
    "tune": "stage 2: LoRA on the U-Net + adapter with the discriminative losses (+ MSE)",
}


def register(sub, name: str) -> argparse.ArgumentParser:
    from dptune.training.config import TrainConfig
    from dptune.utils.config import add_dataclass_args

    p = sub.add_parser(name, help=HELP[name], description=HELP[name] + ". Precedence: defaults < --config "
                       "file < flags. Runs resume from --out-dir when it holds a checkpoint.")
    p.add_argument("--config", default=None, help="YAML or JSON file of options (e.g. configs/paper_sd21_stage1.yaml)")
    p.add_argument("--no-resume", action="store_true", help="ignore checkpoints in --out-dir (start over)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_dataclass_args(p, TrainConfig, skip=("stage",))
    return p


def run(args: argparse.Namespace) -> int:
    from dptune.training import TrainConfig, train
    from dptune.training.config import STAGE_DEFAULTS
    from dptune.utils.config import merge_config

    cfg = merge_config(TrainConfig, args, STAGE_DEFAULTS[args.command], args.config)
    if cfg.stage != args.command:
        raise ValueError(f"the config says stage={cfg.stage!r} but the command is `dptune {args.command}`")
    result = train(cfg, resume=not args.no_resume, progress=not args.no_progress)
    if int(os.environ.get("RANK", "0")) != 0:  # multi-process runs: rank 0 reports
        return 0
    last = result.validation[-1] if result.validation else {}
    summary = ", ".join(f"{k}={v:.3f}" for k, v in last.items() if k != "step" and isinstance(v, float))
    print(f"{cfg.stage}: {result.step} steps -> {result.out_dir}/final ({summary})")
    if result.stopped_early:
        print(f"stopped at the --max-minutes budget; run the same command again to continue from step {result.step}")
    return 0
