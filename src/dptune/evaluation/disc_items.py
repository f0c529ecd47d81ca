"""Evaluation items for the discriminative tasks (paper Sec. 4.2 / Table 3, Appendix B.1) and their builders.

* :class:`ITMItem` -- one image-text matching question with 1 positive and K-1 (= 3) hard negatives:
  ``i2t``: one image, K captions;  ``t2i``: one caption, K images.  The positive is ``candidates[label]``.
* :class:`RECItem` -- an image, a referring expression and its gold box (normalised cxcywh); optionally the
  boxes of every object in the image (to state the 1/#objects chance level).

Builders: ShapesWorld (rendered, any split), the HN-MSCOCO JSON written by ``dptune data`` (images by path)
and RefCOCO-style referring expressions (refer index or MDETR json, images by path). Images are either
tensors (3, H, W) in [-1, 1] or file paths, loaded and square-resized by the evaluator.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

ITM_DIRECTIONS = ("i2t", "t2i")
ImageRef = torch.Tensor | str  # (3, H, W) in [-1, 1], or an image file path
_TRIES = 100


@dataclass
class ITMItem:
    """One ITM question. i2t: ``images`` has 1 entry and ``texts`` K; t2i: ``texts`` 1 and ``images`` K."""

    direction: str
    images: list[ImageRef]
    texts: list[str]
    label: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.direction not in ITM_DIRECTIONS:
            raise ValueError(f"ITMItem direction must be one of {ITM_DIRECTIONS}, got {self.direction!r}")
        one, many = (self.images, self.texts) if self.direction == "i2t" else (self.texts, self.images)
        if len(one) != 1 or len(many) < 2:
            raise ValueError(
                f"{self.direction} item needs 1 query and >= 2 candidates, got {len(one)} and "
                f"{len(many)}; i2t = one image + K captions, t2i = one caption + K images"
            )
        if not 0 <= self.label < len(many):
            raise ValueError(f"label {self.label} is not a candidate index (0..{len(many) - 1})")

    @property
    def num_candidates(self) -> int:
        return max(len(self.images), len(self.texts))


@dataclass
class RECItem:
    """One referring expression: ``box`` is the gold (cx, cy, w, h) normalised to [0, 1]."""

    image: ImageRef
    expression: str
    box: tuple[float, float, float, float]
    object_boxes: list[tuple[float, float, float, float]] | None = None  # every object (chance = 1/count)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        b = tuple(float(v) for v in self.box)
        if len(b) != 4 or not all(0.0 <= v <= 1.0 for v in b) or b[2] <= 0 or b[3] <= 0:
            raise ValueError(
                f"REC box must be normalised (cx, cy, w, h) in [0, 1] with w, h > 0, got {self.box}"
            )
        self.box = b


# ---- ShapesWorld -----------------------------------------------------------------------------------------
def _pick_negatives(spec, rng: np.random.Generator, n: int, id_only: bool) -> list[tuple[str, Any]]:
    """``n`` distinct minimal edits of ``spec``; the category's defining edit (count/swap/flip) is always
    one of them when it exists, the rest are drawn uniformly (None if fewer than ``n`` edits exist)."""
    from dptune.shapesworld.negatives import PRIMARY_EDIT, hard_negative_candidates
    from dptune.shapesworld.splits import is_id_spec

    cands = [(e, s) for e, s in hard_negative_candidates(spec) if not id_only or is_id_spec(s)]
    if len(cands) < n:
        return []
    primary = [i for i, (e, _) in enumerate(cands) if e == PRIMARY_EDIT.get(spec.category)]
    chosen = [primary[int(rng.integers(len(primary)))]] if primary else []
    rest = [i for i in range(len(cands)) if i not in chosen]
    chosen += [rest[int(i)] for i in rng.choice(len(rest), size=n - len(chosen), replace=False)]
    return [cands[i] for i in chosen]


def _shapes_itm_pair(rng: np.random.Generator, category: str, split: str, n_neg: int):
    """(i2t item, t2i item) for one positive scene, or None when the spec has too few edits."""
    from dptune.shapesworld.dataset import to_tensor
    from dptune.shapesworld.grammar import caption
    from dptune.shapesworld.negatives import hard_negative_scene
    from dptune.shapesworld.render import render_scene, scene_for_spec
    from dptune.shapesworld.splits import sample_spec, scene_is_id
    from dptune.shapesworld.truth import prompt_holds

    in_dist = split != "ood"
    accept = scene_is_id if in_dist else None
    spec = sample_spec(rng, category, split)
    negs = _pick_negatives(spec, rng, n_neg, id_only=in_dist)
    if not negs:
        return None
    scene = scene_for_spec(spec, rng, accept)
    hn_scenes = [hard_negative_scene(scene, s, e, rng, accept) for e, s in negs]
    if any(prompt_holds(spec, sc.objects)[0] for sc in hn_scenes):  # never a second correct image
        return None
    meta = {"category": category, "split": split, "edits": [e for e, _ in negs]}
    image = to_tensor(render_scene(scene))
    i2t = ITMItem("i2t", [image], [caption(spec)] + [caption(s) for _, s in negs], 0, dict(meta))
    t2i = ITMItem(
        "t2i", [image] + [to_tensor(render_scene(sc)) for sc in hn_scenes], [caption(spec)], 0, dict(meta)
    )
    return i2t, t2i


def shapesworld_itm_items(split: str, n: int, seed: int = 0, n_negatives: int = 3) -> list[ITMItem]:
    """``n`` i2t and ``n`` t2i items (1 positive + ``n_negatives`` hard negatives each; categories cycle).

    Hard-negative captions are minimal edits of the positive (``hard_negative_candidates``); hard-negative
    images are renders of those edits in the positive's layout, so only the edited attribute differs.
    ID items use only in-distribution compositions (also for negatives); OOD items have held-out positives.
    """
    from dptune.shapesworld.grammar import CATEGORIES
    from dptune.shapesworld.splits import check_split

    check_split(split)
    i2t, t2i = [], []
    for i in range(n):
        rng = np.random.default_rng([seed, 31, i])  # item i is a pure function of (split, seed, i)
        for _ in range(_TRIES):  # re-draw specs with too few edits (or a negative that is also true)
            pair = _shapes_itm_pair(rng, CATEGORIES[i % len(CATEGORIES)], split, n_negatives)
            if pair is not None:
                break
        else:
            raise RuntimeError(
                f"no {split} ITM item with {n_negatives} hard negatives in {_TRIES} draws; lower n_negatives"
            )
        i2t.append(pair[0])
        t2i.append(pair[1])
    return i2t + t2i


def shapesworld_rec_items(split: str, n: int, seed: int = 0) -> list[RECItem]:
    """``n`` referring-expression items (2-4 objects sharing attributes with the target)."""
    from dptune.shapesworld.dataset import to_tensor
    from dptune.shapesworld.refexp import make_ref_scene
    from dptune.shapesworld.render import render_scene
    from dptune.shapesworld.splits import ALL_KINDS, SEEN_KINDS, check_split, scene_is_id

    check_split(split)
    in_dist = split != "ood"
    items = []
    for i in range(n):
        rng = np.random.default_rng([seed, 37, i])
        scene, ref = make_ref_scene(
            rng, SEEN_KINDS if in_dist else ALL_KINDS, scene_is_id if in_dist else None
        )
        boxes = [o.box_cxcywh() for o in scene.objects]
        items.append(
            RECItem(
                to_tensor(render_scene(scene)),
                ref.text,
                boxes[ref.target],
                boxes,
                {"kind": ref.kind, "split": split, "num_objects": len(boxes)},
            )
        )
    return items


# ---- HN-MSCOCO JSON and RefCOCO ---------------------------------------------------------------------------
def _resolve(image_dir: Path | None, name: str, path: Path) -> str:
    if image_dir is None:
        raise ValueError(f"{path} does not name its image folder; pass image_dir= (the COCO image folder)")
    return str(image_dir / name)


def load_hn_coco_items(
    path: str | os.PathLike, image_dir: str | os.PathLike | None = None, max_items: int | None = None
) -> list[ITMItem]:
    """Read the HN-MSCOCO JSON of ``dptune data build-hn-coco`` (format ``dptune-hn-mscoco``) as ITM items.

    ``image_dir`` overrides the folder recorded in the file. Images are loaded lazily by the evaluator.
    """
    from dptune.utils.io import load_json

    path = Path(path)
    data = load_json(path)
    if not isinstance(data, dict) or data.get("format") != "dptune-hn-mscoco":
        raise ValueError(
            f"{path} is not an HN-MSCOCO file (format 'dptune-hn-mscoco'); build one with "
            "`dptune data build-hn-coco`"
        )
    folder = Path(image_dir) if image_dir else (Path(data["image_dir"]) if data.get("image_dir") else None)
    items: list[ITMItem] = []
    for rec in data.get("i2t", [])[:max_items]:
        items.append(
            ITMItem(
                "i2t",
                [_resolve(folder, rec["file_name"], path)],
                list(rec["captions"]),
                int(rec.get("label", 0)),
                {"image_id": rec.get("image_id")},
            )
        )
    for rec in data.get("t2i", [])[:max_items]:
        items.append(
            ITMItem(
                "t2i",
                [_resolve(folder, f, path) for f in rec["file_names"]],
                [rec["caption"]],
                int(rec.get("label", 0)),
                {"caption_id": rec.get("caption_id")},
            )
        )
    if not items:
        raise ValueError(f"{path} holds no i2t/t2i items; rebuild it with `dptune data build-hn-coco`")
    return items


def load_refcoco_items(
    path: str | os.PathLike,
    image_dir: str | os.PathLike,
    splits: list[str] | None = None,
    max_items: int | None = None,
) -> list[RECItem]:
    """RefCOCO/+/g expressions (dptune refer index or MDETR json) as REC items, images from ``image_dir``."""
    from dptune.data.images import xywh_to_cxcywh_norm
    from dptune.data.refcoco import load_ref_records

    records = load_ref_records(path, splits)[:max_items]
    items = []
    for r in records:
        box = tuple(float(v) for v in xywh_to_cxcywh_norm(r.bbox, r.width, r.height))
        items.append(
            RECItem(
                str(Path(image_dir) / r.file_name),
                r.expression,
                box,
                meta={"dataset": r.dataset, "split": r.split, "ref_id": r.ref_id},
            )
        )
    return items
