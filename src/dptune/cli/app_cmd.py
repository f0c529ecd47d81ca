"""``dptune app``: the side-by-side viewer in the browser (Gradio). Starts on the shipped model with no
arguments and prints its local address; after ``make demo`` it offers the demo's trained methods."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "open the side-by-side viewer in the browser: type a prompt, pick methods, compare their images"


def register(sub, name: str) -> argparse.ArgumentParser:
    from dptune.cli.eval_cmd import add_method_args

    p = sub.add_parser(name, help=HELP, description=HELP + ".")
    p.add_argument("--model", default="shapesworld", help="diffusers folder, hub id or 'shapesworld' (default)")
    p.add_argument("--demo-dir", default="runs/demo",
                   help="a `dptune demo` output folder whose trained methods to offer (default runs/demo, if any)")
    add_method_args(p, "default: every registered method that has its weights")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--images", type=int, default=4, help="images per method at start (default 4; seeds 0..n-1)")
    return p


def run(args: argparse.Namespace) -> int:
    from dptune.app.page import CSS, build_page
    from dptune.app.playground import Playground
    from dptune.cli.eval_cmd import split_specs, weights_of

    demo_dir = args.demo_dir if Path(args.demo_dir, "results.json").is_file() else None
    wanted = split_specs(args.methods) if args.methods else None
    play = Playground(args.model, weights_of(args), demo_dir, wanted, args.device)
    page = build_page(play, images=args.images)
    print(f"dptune app: http://{args.host}:{args.port} (methods: {', '.join(play.choices)}); Ctrl+C stops it",
          flush=True)
    page.queue().launch(server_name=args.host, server_port=args.port, css=CSS, show_error=False, quiet=True)
    return 0
