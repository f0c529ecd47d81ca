"""GenEval's scoring rules (Ghosh et al. 2023) over GIVEN detections: counting, colour, position, exclusion.

GenEval detects objects with Mask2Former and classifies crop colours with CLIP; dptune has neither model, so
these rules take detections you computed (any detector, any colour classifier) and apply GenEval's logic:

* keep detections with score > 0.3 (> 0.9 for the ``counting`` tag), most confident first, at most 16 per
  class;
* ``include`` clauses (AND): the top ``count`` detections of the class must exist; with ``color``, at least
  ``count`` of them must have that colour; with ``position`` ``[relation, j]``, every one of them must stand
  in ``relation`` to every object matched by include clause ``j``;
* ``exclude`` clauses (OR): failing if the class has >= ``count`` detections;
* relative position of A to B: offset = centre_A - centre_B, shrunk per axis by 0.1 x (dim_A + dim_B);
  no relation if the shrunk offset is ~0, else (dx, dy) = shrunk / |offset| and left/right/above/below
  when dx < -0.5 / dx > 0.5 / dy < -0.5 / dy > 0.5 (y grows downwards);
* the benchmark score is the unweighted mean over the six tag accuracies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

THRESHOLD = 0.3
COUNTING_THRESHOLD = 0.9
MAX_OBJECTS = 16
POSITION_THRESHOLD = 0.1
COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")
TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")


@dataclass(frozen=True)
class Detection:
    """One detected object: COCO class name, box (x0, y0, x1, y1) in any consistent unit, confidence and
    (optionally) the colour your colour classifier assigned to it."""

    label: str
    box: tuple[float, float, float, float]
    score: float = 1.0
    colour: str | None = None


def relative_position(a: Detection, b: Detection) -> set[str]:
    """Relations of ``a`` relative to ``b``: subset of {'left of', 'right of', 'above', 'below'}."""
    ba, bb = np.asarray(a.box, dtype=np.float64), np.asarray(b.box, dtype=np.float64)
    centre_a, centre_b = (ba[:2] + ba[2:]) / 2, (bb[:2] + bb[2:]) / 2
    dim_a, dim_b = np.abs(ba[2:] - ba[:2]), np.abs(bb[2:] - bb[:2])
    offset = centre_a - centre_b
    revised = np.maximum(np.abs(offset) - POSITION_THRESHOLD * (dim_a + dim_b), 0) * np.sign(offset)
    if np.all(np.abs(revised) < 1e-3):
        return set()
    dx, dy = revised / np.linalg.norm(offset)
    rels = set()
    if dx < -0.5:
        rels.add("left of")
    if dx > 0.5:
        rels.add("right of")
    if dy < -0.5:
        rels.add("above")
    if dy > 0.5:
        rels.add("below")
    return rels


def filter_detections(detections: Sequence[Detection], tag: str) -> dict[str, list[Detection]]:
    """Per class, detections above the tag's threshold, most confident first, at most MAX_OBJECTS."""
    thr = COUNTING_THRESHOLD if tag == "counting" else THRESHOLD
    by_class: dict[str, list[Detection]] = {}
    for d in sorted(detections, key=lambda d: -d.score):
        if d.score > thr and len(by_class.setdefault(d.label, [])) < MAX_OBJECTS:
            by_class[d.label].append(d)
    return {k: v for k, v in by_class.items() if v}


def _check_include(req: Mapping, objects: dict[str, list[Detection]], matched: list) -> str | None:
    """Reason the include clause fails, or None; appends its matched objects (or None) to ``matched``."""
    cls, count = req["class"], int(req["count"])
    found = objects.get(cls, [])[:count]
    if len(found) < count:
        matched.append(None)
        return f"expected {cls}>={count}, found {len(found)}"
    if "color" in req:
        colours = [d.colour for d in found]
        if None in colours:
            raise ValueError(
                f"clause {dict(req)} needs colours but a '{cls}' detection has colour=None; "
                "classify each detection's colour (GenEval: CLIP ViT-L-14 zero-shot) first"
            )
        if colours.count(req["color"]) < count:
            matched.append(None)
            return (
                f"expected {req['color']} {cls}>={count}, found {colours.count(req['color'])} {req['color']}"
            )
    if "position" in req:
        rel, j = req["position"]
        targets = matched[int(j)] if int(j) < len(matched) else None
        if targets is None:
            matched.append(None)
            return f"no target for {cls} to be {rel}"
        for obj in found:
            for tgt in targets:
                true = relative_position(obj, tgt)
                if rel not in true:
                    matched.append(None)
                    return f"expected {cls} {rel} target, found {' and '.join(sorted(true)) or 'no relation'}"
    matched.append(found)
    return None


def geneval_verdict(metadata: Mapping, detections: Sequence[Detection]) -> tuple[bool, str]:
    """(correct, reason) of one image for one GenEval metadata record {tag, prompt, include, exclude?}."""
    if "tag" not in metadata:
        raise ValueError(
            "GenEval metadata needs 'tag' (and 'include'); pass a line of evaluation_metadata.jsonl"
        )
    objects = filter_detections(detections, str(metadata["tag"]))
    reasons: list[str] = []
    matched: list = []
    for req in metadata.get("include", []):
        why = _check_include(req, objects, matched)
        if why:
            reasons.append(why)
    for req in metadata.get("exclude", []):
        n = len(objects.get(req["class"], []))
        if n >= int(req["count"]):
            reasons.append(f"expected {req['class']}<{req['count']}, found {n}")
    return not reasons, "; ".join(reasons)


def geneval_score(verdicts: Sequence[tuple[str, bool]]) -> dict[str, float]:
    """Per-tag accuracy and the overall score (unweighted mean over tags) from (tag, correct) pairs."""
    tags = dict.fromkeys(t for t, _ in verdicts)
    per_tag = {t: float(np.mean([c for tt, c in verdicts if tt == t])) for t in tags}
    return {**per_tag, "overall": float(np.mean(list(per_tag.values()))) if per_tag else float("nan")}
