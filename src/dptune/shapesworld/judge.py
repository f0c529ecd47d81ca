"""Exact ShapesWorld judge (GenEval-style): parse an image into objects, then score it against a prompt.

Parsing: every pixel gets the nearest palette entry (white background included; pixels far from every
entry count as background), each colour is split into 8-connected components (scipy.ndimage), components
smaller than ``MIN_COMPONENT_PIXELS`` are ignored (blur/noise specks), and the shape comes from two numbers:

* asymmetry = (mean row width of the bottom third - top third) / box width: ~0.67 for the apex-up triangle,
  ~0 for circles and squares;
* fill = pixels / box area: ~1.0 for squares, ~0.6-0.8 for rasterised discs.

Scoring rules are those of :func:`dptune.shapesworld.truth.prompt_holds` (count ignores objects of other
kinds; relation compares box centres with a 3/32-image margin); ``exact_scene`` additionally requires no
extra objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from dptune.shapesworld.grammar import BACKGROUND, CATEGORIES, COLOURS, PALETTE, Obj, Prompt, parse_prompt
from dptune.shapesworld.truth import exact_scene, prompt_holds

MIN_COMPONENT_PIXELS = 5
BACKGROUND_MAX_DIST = 150.0  # RGB distance beyond which a pixel matches no palette entry -> background
TRIANGLE_MIN_ASYMMETRY = 0.3
SQUARE_MIN_FILL = 0.9

_PALETTE = np.array([BACKGROUND] + [PALETTE[c] for c in COLOURS], dtype=np.float32)  # (1+C, 3)
_EIGHT = np.ones((3, 3), dtype=bool)


@dataclass
class JudgeResult:
    """Verdict for one image: ``correct`` under the GenEval-style rules, plus what was found and why."""

    prompt: str
    category: str
    correct: bool
    exact_scene: bool
    found: list[Obj] = field(default_factory=list)
    reason: str = ""


def to_uint8_hwc(image) -> np.ndarray:
    """Accept uint8 (H, W, 3) numpy or a float tensor/array (3, H, W) in [-1, 1]; return uint8 (H, W, 3)."""
    if hasattr(image, "detach"):  # torch tensor, without importing torch here
        image = image.detach().to("cpu").float().numpy()
    image = np.asarray(image)
    if image.dtype == np.uint8:
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"uint8 image must be (H, W, 3), got {image.shape}; transpose channels-last")
        return image
    if np.issubdtype(image.dtype, np.floating):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"float image must be (3, H, W) in [-1, 1], got {image.shape}")
        hwc = np.transpose(image, (1, 2, 0))  # (H, W, 3)
        return np.clip(np.rint((hwc + 1.0) * 127.5), 0, 255).astype(np.uint8)
    raise ValueError(f"unsupported image dtype {image.dtype}; pass uint8 (H, W, 3) or float (3, H, W) in [-1, 1]")


def palette_labels(img: np.ndarray) -> np.ndarray:
    """(H, W) int: 0 = background, 1.. = index into COLOURS + 1."""
    d = np.linalg.norm(img[:, :, None, :].astype(np.float32) - _PALETTE[None, None], axis=-1)  # (H, W, 1+C)
    labels = d.argmin(-1)
    labels[d.min(-1) > BACKGROUND_MAX_DIST] = 0
    return labels


def shape_features(mask: np.ndarray) -> tuple[float, float]:
    """(fill, asymmetry) of a component mask cropped to its box."""
    h, w = mask.shape
    widths = mask.sum(axis=1).astype(np.float32)  # (h,) pixels per row
    third = max(1, h // 3)
    return float(mask.mean()), float((widths[-third:].mean() - widths[:third].mean()) / w)


def classify_shape(mask: np.ndarray) -> str:
    """Shape of a component mask cropped to its box (thresholds sit midway between the shapes' values)."""
    fill, asym = shape_features(mask)
    if asym >= TRIANGLE_MIN_ASYMMETRY:
        return "triangle"
    return "square" if fill >= SQUARE_MIN_FILL else "circle"


def parse_image(image) -> list[Obj]:
    """Detect objects (colour, shape, tight box) in an image, ordered top-to-bottom then left-to-right."""
    img = to_uint8_hwc(image)
    labels = palette_labels(img)
    objects: list[Obj] = []
    for ci, colour in enumerate(COLOURS, start=1):
        comp, n = ndimage.label(labels == ci, structure=_EIGHT)
        if n == 0:
            continue
        for k, sl in enumerate(ndimage.find_objects(comp), start=1):
            mask = comp[sl] == k  # (h, w) cropped component
            if mask.sum() < MIN_COMPONENT_PIXELS:
                continue
            box = (sl[1].start, sl[0].start, sl[1].stop, sl[0].stop)
            objects.append(Obj(colour, classify_shape(mask), box))
    return sorted(objects, key=lambda o: (o.box[1], o.box[0]))


def judge_image(image, prompt: Prompt | str) -> JudgeResult:
    """Score one image against one prompt."""
    if isinstance(prompt, str):
        prompt = parse_prompt(prompt)
    size = to_uint8_hwc(image).shape[1]
    found = parse_image(image)
    ok, reason = prompt_holds(prompt.spec, found, size)
    return JudgeResult(prompt.text, prompt.category, ok, exact_scene(prompt.spec, found, size), found, reason)


def judge_batch(images, prompts: Sequence[Prompt | str]) -> list[JudgeResult]:
    """Score a batch: ``images`` is a sequence of images or a (B, 3, H, W) tensor / (B, H, W, 3) uint8."""
    if len(images) != len(prompts):
        raise ValueError(f"got {len(images)} images but {len(prompts)} prompts; pass one prompt per image")
    return [judge_image(img, p) for img, p in zip(images, prompts, strict=True)]


def summarize(results: Sequence[JudgeResult]) -> dict[str, dict[str, float]]:
    """Per-category and overall {n, correct, accuracy, exact}; categories without results are omitted."""
    out: dict[str, dict[str, float]] = {}
    for name in (*CATEGORIES, "overall"):
        rs = [r for r in results if name in (r.category, "overall")]
        if not rs:
            continue
        n = len(rs)
        correct = sum(r.correct for r in rs)
        out[name] = {"n": n, "correct": correct, "accuracy": correct / n,
                     "exact": sum(r.exact_scene for r in rs) / n}
    return out
