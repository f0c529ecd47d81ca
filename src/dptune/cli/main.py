"""``dptune`` entry point. Each command lives in its own module exposing ``register(subparsers)`` and
``run(args) -> int``; modules import torch/diffusers lazily inside ``run`` so ``dptune --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command name -> module under dptune.cli (order = order in --help)
COMMANDS: dict[str, str] = {
    "demo": "dptune.cli.demo_cmd",
    "info": "dptune.cli.info_cmd",
    "adapter-info": "dptune.cli.adapter_info_cmd",
    "probe": "dptune.cli.train_cmd",
    "tune": "dptune.cli.train_cmd",
    "methods": "dptune.cli.methods_cmd",
    "train": "dptune.cli.method_train_cmd",
    "generate": "dptune.cli.generate_cmd",
    "eval": "dptune.cli.eval_cmd",
    "compare": "dptune.cli.compare_cmd",
    "app": "dptune.cli.app_cmd",
    "shapesworld": "dptune.cli.shapesworld_cmd",
    "data": "dptune.cli.data_cmd",
}


class UserError(Exception):
    """An error caused by the user's input; printed as one line without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dptune",
        description="Make text-to-image diffusion models follow their prompts with discriminative signals: "
        "probe, tune, generate with any registered method, evaluate and compare.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name == module_name:  # command not built yet in this checkout
                continue
            raise
        cmd = module.register(sub, name)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    import os

    # transformers warns at import about optional packages (torchvision) the CLI never uses; errors stay one line
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from dptune.utils.io import ArtefactError  # light: no torch at import

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "_pass_through", False):  # only pass-through commands take foreign flags
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    try:
        return int(args._run(args) or 0)
    except (UserError, FileNotFoundError, ValueError, ArtefactError) as e:
        # One clear line naming the problem and the fix; --debug-style tracebacks via DPTUNE_DEBUG=1.
        import os

        if os.environ.get("DPTUNE_DEBUG"):
            raise
        print(f"dptune {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
