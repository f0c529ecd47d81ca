"""Checks of a demo's outputs: how many images report.html embeds, and whether the saved PNGs still get
the verdicts their results.json records (the ShapesWorld judge is exact, so they must)."""

from __future__ import annotations

import os
from html.parser import HTMLParser
from pathlib import Path

from dptune.demo.names import EVAL_DIR

DATA_URI = "data:image/png;base64,"


class _ImgSources(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.sources.append(dict(attrs).get("src") or "")


def report_image_count(html_path: str | os.PathLike) -> int:
    """Number of <img> tags of ``html_path`` (generated images and plots), each embedded as a PNG data URI.

    Raises ValueError if an <img> is not embedded (the report would not be one self-contained file).
    """
    parser = _ImgSources()
    parser.feed(Path(html_path).read_text(encoding="utf-8"))
    linked = [s[:60] for s in parser.sources if not s.startswith(DATA_URI)]
    if linked:
        raise ValueError(f"{html_path}: {len(linked)} <img> tags are not embedded PNG data URIs (first src: "
                         f"{linked[0]!r}); the report must carry every image it shows")
    return len(parser.sources)


def _as_saved(result) -> dict:
    """A JudgeResult in the form the evaluation stores it (see dptune.shapesworld.eval_hooks.judge_scorer)."""
    return {"correct": bool(result.correct), "exact": float(result.exact_scene), "reason": result.reason,
            "found": [[o.colour, o.shape, [int(x) for x in o.box]] for o in result.found]}


def rejudge_images(results: dict, out_dir: str | os.PathLike) -> list[str]:
    """Judge every saved PNG of ``results`` again; one line per record whose new verdict differs from the
    saved one (empty list: every verdict reproduced). Image paths are relative to ``results['image_root']``
    under ``out_dir`` (default the demo's ``eval``); a missing PNG raises MissingImageError."""
    import numpy as np
    from PIL import Image

    from dptune.evaluation.report import ImageRoot, image_root
    from dptune.shapesworld.judge import judge_image

    root = ImageRoot(image_root(results, out_dir, default=EVAL_DIR), str(Path(out_dir) / "results.json"))
    mismatches = []
    for m in results["methods"]:
        for set_name, res in (m.get("generative") or {}).items():
            for rec in res.get("images", []):
                saved = rec["metrics"].get("judge")
                if saved is None or "file" not in rec:
                    continue
                image = np.asarray(Image.open(root.path(rec, m["name"], set_name)).convert("RGB"))
                again = _as_saved(judge_image(image, rec["prompt"]))
                diff = {k: (saved.get(k), v) for k, v in again.items() if saved.get(k) != v}
                if diff:
                    mismatches.append(f"{m['name']} / {set_name} / {rec['file']}: " + "; ".join(
                        f"{k} saved {a!r}, re-judged {b!r}" for k, (a, b) in diff.items()))
    return mismatches
