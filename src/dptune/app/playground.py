"""The app's engine, without any UI: which methods can run, their images for a prompt, and the judge's verdict.

Methods come from the registry. Those that need weights take them from the weight flags (``--adapter``,
``--lora``, ``--tokens``, ``--weights``) or, by default, from a demo run's ``results.json``, whose rows carry
each method's resolved config (so after ``make demo`` the app offers exactly the demo's trained methods).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from dptune.utils.images import enlarge

DEFAULT_CHOICES = ("base", "dpt", "dpt+gsc")  # plus every sibling method that has weights


@dataclass
class Tile:
    """One generated image as the page shows it."""

    method: str
    image: np.ndarray  # (H, W, 3) uint8, enlarged
    verdict: str | None  # the world's judge on this prompt, or None when the model has no judge
    seconds: float  # generation time of this method's images / number of images


def runs_from_demo(demo_dir: str | Path) -> dict[str, Any]:
    """{label: MethodRun} of the generated rows of a demo run (their configs hold the weight paths)."""
    from dptune.methods import MethodRun, get_method
    from dptune.utils.config import from_dict
    from dptune.utils.io import load_json

    path = Path(demo_dir) / "results.json"
    if not path.is_file():
        return {}
    runs = {}
    for m in load_json(path)["methods"]:
        spec = m.get("spec") or {}
        if not m.get("generative") or "method" not in spec:
            continue
        try:
            method = get_method(spec["method"])
            runs[m["name"]] = MethodRun(m["name"], method, from_dict(method.config, spec["config"]))
        except (ValueError, TypeError):  # a method this checkout no longer has
            continue
    return runs


class Playground:
    """Generates a prompt with several methods on one shared model (same seeds for all)."""

    def __init__(self, model: str = "shapesworld", weights: dict | None = None, demo_dir: str | None = None,
                 methods: list[str] | None = None, device: str = "cpu") -> None:
        from dptune.methods import GenerationContext

        self.ctx = GenerationContext(model, device)
        self.runs = self._available(weights or {}, demo_dir, methods)
        self._generators: dict[str, Any] = {}
        self._judge = self._find_judge(model)

    @staticmethod
    def _available(weights: dict, demo_dir: str | None, wanted: list[str] | None) -> dict[str, Any]:
        from dptune.methods import methods, parse_method

        runs = {k: v for k, v in runs_from_demo(demo_dir).items() if " " not in k} if demo_dir else {}
        for spec in wanted or list(methods()):
            if spec in runs:
                continue
            try:
                run = parse_method(spec, weights)
                run.check_weights()
            except (ValueError, FileNotFoundError):
                if wanted:
                    raise  # the user asked for it: say what is missing
                continue
            runs[spec] = run
        return runs

    @staticmethod
    def _find_judge(model: str):
        from dptune.plugins import world_of_model

        world = world_of_model(model)
        return None if world is None else world.scorers.get("judge")

    @property
    def choices(self) -> list[str]:
        return list(self.runs)

    @property
    def default_choices(self) -> list[str]:
        chosen = [c for c in self.choices if c in DEFAULT_CHOICES]
        siblings = [c for c in self.choices if not c.startswith(("base", "dpt")) and c not in chosen]
        return chosen + siblings

    def generator(self, label: str, eta: float | None = None):
        run = self.runs[label]
        config = run.config
        if eta is not None and hasattr(config, "eta") and run.method.name == "dpt+sc":
            config = replace(config, eta=float(eta))
        key = (label, getattr(config, "eta", None))
        if key not in self._generators:
            self._generators[key] = run.method.generator(config, self.ctx)
        return self._generators[key]

    def verdict(self, image: np.ndarray, prompt: str) -> str | None:
        if self._judge is None:
            return None
        from dptune.data.eval_items import PromptRecord

        try:
            (v,) = self._judge(image[None], [PromptRecord(prompt)])
        except ValueError as e:  # the world's judge cannot read this prompt
            return f"judge: {e}"
        return ("correct" if v["score"] >= 1 else "wrong") + (f" ({v['reason']})" if v.get("reason") else "")

    def generate(self, prompt: str, labels: list[str], seeds: list[int], eta: float | None = None) -> list[Tile]:
        """Images of ``prompt`` for each method in ``labels`` and each seed."""
        if not prompt or not prompt.strip():
            raise ValueError("type a prompt first, e.g. 'two red circles left of a blue square'")
        unknown = [lab for lab in labels if lab not in self.runs]
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; this app offers {self.choices}")
        tiles = []
        for label in [c for c in self.choices if c in labels]:  # the page's order, whatever the click order
            generate = self.generator(label, eta)  # loads the method's weights once (not timed)
            start = time.perf_counter()
            images = generate([prompt.strip()] * len(seeds), seeds)  # (n, H, W, 3) in [0, 1]
            per_image = (time.perf_counter() - start) / len(seeds)
            for img in (np.asarray(images) * 255).round().clip(0, 255).astype(np.uint8):
                tiles.append(Tile(label, enlarge(img), self.verdict(img, prompt.strip()), per_image))
        return tiles
