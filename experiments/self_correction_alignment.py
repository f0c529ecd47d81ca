"""Self-correction and ShapesWorld alignment: exact-judge accuracy of ID prompts without / with Eq. 9 correction.

Same prompts and seeds for plain sampling and each (eta, window) of ``CONFIGS`` (raw gradient, paper mode),
DDIM 25 steps, guidance 4. Wins and losses count prompts the judge flips from wrong to right and back relative
to plain sampling. docs/self_correction.md ("Default window") reports a run with an early stage-1 adapter.
Prints one JSON line.

    .venv/bin/python experiments/self_correction_alignment.py --adapter runs/probe/final/adapter
"""

from __future__ import annotations

import argparse
import json

CONFIGS = {  # name -> (eta, window as fractions of the steps)
    "every_step_eta0.5": (0.5, (0.0, 1.0)),
    "default_window_eta0.5": (0.5, (0.0, 0.5)),
    "first_30pct_eta0.5": (0.5, (0.0, 0.3)),
    "second_half_eta0.5": (0.5, (0.5, 1.0)),
    "every_step_eta1.0": (1.0, (0.0, 1.0)),
    "default_window_eta1.0": (1.0, (0.0, 0.5)),
}


def sampler(adapter_dir: str, steps: int, guidance: float):
    """``generate(texts, seeds, eta_window or None) -> (N, 32, 32, 3) uint8`` on the shipped ShapesWorld SD."""
    import numpy as np

    from dptune.adapter import load_probe
    from dptune.backbone import SDBackbone
    from dptune.methods.dpt import MatchScore
    from dptune.sampling import GuidedPipeline, SelfCorrectionConfig

    pipe = GuidedPipeline.from_pretrained("shapesworld", scheduler="ddim")
    objective = MatchScore(load_probe(SDBackbone.from_pipeline(pipe.pipe), adapter_dir))

    def generate(texts: list[str], seeds: list[int], eta_window: tuple | None):
        correction = None if eta_window is None else SelfCorrectionConfig(eta=eta_window[0], window=eta_window[1])
        images = pipe(texts, seeds=seeds, num_inference_steps=steps, guidance_scale=guidance, correction=correction,
                      objective=objective, progress=False, batch_size=64)  # (N, 32, 32, 3) in [0, 1]
        return np.rint(images * 255).astype(np.uint8)

    return generate


def alignment(adapter_dir: str, n_per_category: int, steps: int = 25, guidance: float = 4.0) -> dict:
    from dptune.shapesworld import eval_prompts, judge_batch, summarize

    generate = sampler(adapter_dir, steps, guidance)
    prompts = eval_prompts("id", n_per_category, seed=7)
    texts, seeds = [p.text for p in prompts], list(range(len(prompts)))

    def judged(eta_window):
        results = judge_batch(list(generate(texts, seeds, eta_window)), prompts)
        return [r.correct for r in results], summarize(results)

    base, base_summary = judged(None)
    out = {"plain": {k: round(v["accuracy"], 4) for k, v in base_summary.items()}}
    for name, eta_window in CONFIGS.items():
        correct, summary = judged(eta_window)
        out[name] = {k: round(v["accuracy"], 4) for k, v in summary.items()}
        out[name]["wins"] = sum(c and not b for c, b in zip(correct, base, strict=True))
        out[name]["losses"] = sum(b and not c for c, b in zip(correct, base, strict=True))
    return {"experiment": "self_correction_alignment", "adapter": adapter_dir, "prompts": len(prompts),
            "steps": steps, "guidance": guidance, "scheduler": "ddim", "accuracy": out}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--adapter", required=True, metavar="DIR", help="a stage-1 adapter folder (save_adapter)")
    ap.add_argument("--prompts", type=int, default=50, help="ID prompts per category (4 categories)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    result = alignment(args.adapter, args.prompts)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
