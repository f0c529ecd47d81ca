"""``dptune methods``: the registered alignment methods, one line each; ``dptune methods NAME``: its options."""

from __future__ import annotations

import argparse

HELP = "list the registered methods (or one method's options)"


def register(sub, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=HELP, description=HELP + ". Pick one with --method NAME:key=value,...")
    p.add_argument("name", nargs="?", default=None, help="a method name: print its options")
    return p


def run(args: argparse.Namespace) -> int:
    from dptune.methods import get_method, methods, option_help

    if args.name:
        method = get_method(args.name)
        print(f"{method.name}: {method.summary}")
        if method.weights:
            print(f"  needs: {', '.join(method.weights)}" + (f" (from `{method.trained_by}`)" if method.trained_by
                                                             else ""))
        for line in option_help(method) or ["(no options)"]:
            print("  " + line)
        return 0
    table = methods()
    width = max(map(len, table))
    for name, method in table.items():
        print(f"{name:<{width}}  {method.summary}")
    return 0
