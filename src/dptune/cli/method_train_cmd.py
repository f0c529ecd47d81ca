"""``dptune train NAME [--option ...]``: train a registered method; its options come from its train config.

    dptune train dpt --stage tune --config configs/paper_sd21_stage2.yaml
    dptune train NAME --help      # that method's training options
"""

from __future__ import annotations

import argparse

HELP = "train a registered method (options: `dptune train NAME --help`)"


def register(sub, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=HELP, description=HELP, add_help=False)
    p.add_argument("method", nargs="?", default=None, help="registered method name (`dptune methods`)")
    p.add_argument("-h", "--help", action="store_true", help="show the method's training options")
    p.set_defaults(_pass_through=True)
    return p


def method_parser(method) -> argparse.ArgumentParser:
    from dptune.utils.config import add_dataclass_args

    p = argparse.ArgumentParser(prog=f"dptune train {method.name}",
                                description=f"train {method.name}: {method.summary}")
    p.add_argument("--config", default=None, help="YAML or JSON file of training options")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_dataclass_args(p, method.train_config)
    return p


def run(args: argparse.Namespace) -> int:
    from dptune.methods import get_method, methods
    from dptune.utils.config import merge_config

    trainable = sorted(n for n, m in methods().items() if m.train is not None and m.train_config is not None)
    if args.method is None:
        if args.help:
            print(f"usage: dptune train NAME [options]; trainable methods: {', '.join(trainable)}")
            return 0
        raise ValueError(f"name the method to train; trainable methods: {', '.join(trainable)}")
    method = get_method(args.method)
    if method.train is None or method.train_config is None:
        raise ValueError(f"method {method.name!r} has nothing to train; trainable methods: {', '.join(trainable)}")
    parser = method_parser(method)
    if args.help:
        parser.print_help()
        return 0
    try:
        opts = parser.parse_args(args.extra)
    except SystemExit as e:  # argparse already printed its usage line; say what failed in one line
        raise ValueError(f"bad options for `dptune train {method.name}`: {' '.join(args.extra)}") from e
    cfg = merge_config(method.train_config, opts, file=opts.config)
    result = method.train(cfg, progress=not opts.no_progress)
    print(f"{method.name}: trained -> {getattr(result, 'out_dir', result)}")
    return 0
