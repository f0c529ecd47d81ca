"""How far the shipped ``shapesworld-count`` classifier can be trusted (numbers in its model card):
held-out renders, their VAE reconstructions, and agreement with the exact judge on the base model's samples.

    python experiments/dct_counter_check.py --seeds 2
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=2, help="samples per prompt (seeds from 50,000)")
    p.add_argument("--renders", type=int, default=400)
    a = p.parse_args()
    torch.set_num_threads(1)
    from dptune.backbone import load_backbone
    from dptune.methods.base import BaseGenerator
    from dptune.methods.context import GenerationContext
    from dptune.methods.dct.classifiers import load_classifier
    from dptune.methods.dct.counter import render_counts, to_unit
    from dptune.methods.dct.worlds import count_captions
    from dptune.shapesworld.judge import parse_image

    clf = load_classifier("shapesworld-count")
    bb = load_backbone("shapesworld")
    images, labels = render_counts(a.renders, 2_000_000)  # a stream neither training nor the test split used
    x, y = to_unit(images), torch.from_numpy(labels)
    with torch.no_grad():
        rec = (bb.decode_latents(bb.encode_images(x * 2 - 1)) + 1) / 2
        out = {"renders": clf(x).argmax(1).eq(y).float().mean().item(),
               "vae_reconstructions": clf(rec).argmax(1).eq(y).float().mean().item()}
    prompts = [p for c in (1, 2, 3, 4) for p in count_captions(c, "all") for _ in range(a.seeds)]
    seeds = [50_000 + i % a.seeds for i in range(len(prompts))]
    samples = BaseGenerator(GenerationContext("shapesworld"))(prompts, seeds)  # (N, 32, 32, 3) in [0, 1]
    with torch.no_grad():
        pred = clf(torch.from_numpy(samples).permute(0, 3, 1, 2).float()).argmax(1).numpy() + 1
    found = np.array([len(parse_image(np.rint(s * 255).astype(np.uint8))) for s in samples])
    want = np.array([{"a": 1, "two": 2, "three": 3, "four": 4}[p.split()[0]] for p in prompts])
    out["samples"] = len(samples)
    out["agrees_with_judge_count"] = float((pred == found).mean())
    for c in (1, 2, 3, 4):
        m = want == c
        out[f"count{c}"] = {"judge_has_count": float((found[m] == c).mean()),
                            "classifier_says_count": float((pred[m] == c).mean())}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
