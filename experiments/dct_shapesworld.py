"""Train a DCT count token on the shipped ShapesWorld SD and measure the judge's accuracy on prompts of that count,
base vs dct, on evaluation seeds that training never drew (what docs/dct.md reports).

    python experiments/dct_shapesworld.py --out runs/dct-exp --target 3 --steps 12 --lr 1.25e-3 --seeds 6
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/dct-exp")
    p.add_argument("--target", type=int, default=3)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--grad-accum", type=int, default=2)
    p.add_argument("--grad-steps", type=int, default=3)
    p.add_argument("--lr", type=float, default=1.25e-3)
    p.add_argument("--stop-accuracy", type=float, default=0.95, help="1.0: never stop on accuracy")
    p.add_argument("--sample-steps", type=int, default=None)
    p.add_argument("--seeds", type=int, default=6, help="evaluation seeds per prompt (from 50,000)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--which", default="best", choices=("best", "final"), help="the best epoch's token or the last")
    p.add_argument("--rows", default="base,init,dct", help="what to measure: base model, the token at its "
                   "initialisation (the count word repeated: a control), the trained token")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    from dptune.methods.base import BaseGenerator
    from dptune.methods.context import GenerationContext
    from dptune.methods.dct.config import DCTTrainConfig
    from dptune.methods.dct.generator import DCTConfig, DCTGenerator
    from dptune.methods.dct.run import train_dct, trained_tokens
    from dptune.methods.dct.worlds import target_accuracy

    t0 = time.perf_counter()
    cfg = DCTTrainConfig(out_dir=str(Path(a.out) / "train"), classifier="shapesworld-count", target=str(a.target),
                         steps=a.steps, batch_size=a.batch_size, grad_accum=a.grad_accum, grad_steps=a.grad_steps,
                         lr=a.lr, sample_steps=a.sample_steps, stop_accuracy=a.stop_accuracy, patience=a.steps,
                         checkpoint_every=1000)
    result = train_dct(cfg, progress=False)
    t_train = time.perf_counter() - t0
    tokens = trained_tokens(cfg.out_dir) if a.which == "best" else Path(cfg.out_dir) / "final" / "tokens"
    ctx = GenerationContext("shapesworld")
    report = {"args": vars(a), "train_s": round(t_train, 1), "steps": result.step,
              "history": [round(h["accuracy"], 3) for h in result.validation], "tokens": str(tokens)}
    init = init_token(tokens, Path(a.out) / "init-token")
    gens = {"base": lambda: BaseGenerator(ctx), "init": lambda: DCTGenerator(DCTConfig(tokens=str(init)), ctx),
            "dct": lambda: DCTGenerator(DCTConfig(tokens=str(tokens)), ctx)}
    for name in a.rows.split(","):
        report[name] = target_accuracy(gens[name](), a.target, a.seeds)
    report["total_s"] = round(time.perf_counter() - t0, 1)
    (Path(a.out) / f"report-{a.which}-{a.rows.replace(',', '-')}.json").write_text(json.dumps(report, indent=1))
    print(json.dumps({k: report[k] for k in ("train_s", "total_s", "history")}))
    for name in a.rows.split(","):
        r = report[name]
        print(name, r["accuracy"], r["ci95"], "id", r["id"]["accuracy"], "ood", r["ood"]["accuracy"], "n", r["n"],
              "objects", r["any_kind_count"]["accuracy"])


def init_token(tokens: Path, out: Path) -> Path:
    """The trained token's folder with its row reset to the initializer's embedding (the untrained token)."""
    from dptune.backbone import load_backbone
    from dptune.methods.dct.token import load_token, save_token

    token, _, meta = load_token(tokens)
    bb = load_backbone(meta["model"])
    init_id = bb.tokenizer.encode(meta["initializer"], add_special_tokens=False)[0]
    row = bb.text_encoder.get_input_embeddings().weight[init_id].detach()
    return save_token(out, token, row, {**meta, "note": "untrained: the initializer's embedding"})


if __name__ == "__main__":
    main()
