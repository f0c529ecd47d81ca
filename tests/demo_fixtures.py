"""A demo-shaped results dict with real PNGs and real judge verdicts, for report tests (no model needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

import dptune.shapesworld as sw
from dptune.demo.names import BASE, DPT, DPT_SC, SC_CURVE_PREFIX
from dptune.shapesworld.grammar import OPPOSITE, PromptSpec, make_prompt

SETS = {"shapesworld-id": "id", "shapesworld-ood": "ood"}


def _render(text: str, seed: int, relation_blind: bool) -> np.ndarray:
    """The prompt drawn exactly, or with its relation the other way round (a typical base-model error)."""
    spec = sw.parse_prompt(text).spec
    if relation_blind and spec.category == "relation":
        text = make_prompt(PromptSpec("relation", spec.kinds, relation=OPPOSITE[spec.relation])).text
    return sw.render_prompt(text, seed=seed)


def _summary(records: list[dict]) -> dict:
    """The judge block of a summary (means only: the report needs no real CI for these checks)."""
    def ci(vals):
        m = float(np.mean(vals))
        return {"mean": m, "ci_low": m, "ci_high": m, "n": len(vals)}

    cats = dict.fromkeys(r["category"] for r in records)
    block = {c: ci([r["metrics"]["judge"]["score"] for r in records if r["category"] == c]) for c in cats}
    block["overall"] = ci([r["metrics"]["judge"]["score"] for r in records])
    return {"judge": block}


def _set_result(name: str, split: str, method: str, eval_dir: Path, k: int) -> dict:
    records = []
    for i, p in enumerate(sw.eval_prompts(split, 1)):
        for j in range(k):
            seed = i * k + j
            image = _render(p.text, seed, relation_blind=method == BASE)
            file = Path("images") / method.replace("+", "_").replace(" ", "_") / name / f"p{i:04d}_j{j}_s{seed}.png"
            (eval_dir / file).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(eval_dir / file)
            r = sw.judge_image(image, p.text)
            judge = {"score": float(r.correct), "correct": r.correct, "exact": float(r.exact_scene),
                     "reason": r.reason, "found": [[o.colour, o.shape, list(o.box)] for o in r.found]}
            records.append({"prompt_index": i, "prompt": p.text, "category": p.category, "j": j, "seed": seed,
                            "file": file.as_posix(), "metrics": {"judge": judge}})
    return {"n_prompts": len(records) // k, "images_per_prompt": k, "source": "ShapesWorld",
            "settings": {}, "summary": _summary(records), "images": records}


def demo_results(out: Path, k: int = 2) -> dict:
    """A demo-shaped results dict (4 methods incl. one strength-curve point, ID + OOD, 1 prompt per category,
    ``k`` images each, a text-encoder check); PNGs under ``out/eval`` with paths relative to it."""
    methods = []
    for name, method, config in ((BASE, BASE, {}), (DPT, DPT, {"lora": "L"}), (DPT_SC, DPT_SC, {"eta": 0.5}),
                                 (f"{SC_CURVE_PREFIX}1", DPT_SC, {"eta": 1.0})):
        gen = {s: _set_result(s, split, name, out / "eval", k) for s, split in SETS.items()}
        spec = {"method": method, "label": name, "config": config}  # as the method registry writes it
        methods.append({"name": name, "spec": spec, "generative": gen, "discriminative": None})
    edit = {"pooled_cos": 0.99, "hidden_rel_diff": 0.02, "near_identical": 1.0}
    return {"format": "dptune-eval-results", "config": {"n_boot": 50, "grid_prompts": 8}, "methods": methods,
            "demo": {"text_check": {"base": {"flip": edit}, "dpt": {"flip": edit}}, "total_s": 1.0}}
