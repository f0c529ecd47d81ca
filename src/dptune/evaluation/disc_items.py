"""Evaluation items for the discriminative tasks (paper Sec. 4.2 / Table 3, Appendix B.1) and their builders.

:class:`ITMItem` (one image-text matching question, 1 positive + K-1 hard negatives) and :class:`RECItem`
(an image, a referring expression and its gold box) are defined in :mod:`dptune.data.eval_items` so that
worlds can build them; they are re-exported here. This module reads the HN-MSCOCO JSON written by
``dptune data`` (images by path) and RefCOCO-style referring expressions (refer index or MDETR json, images by
path). A world's own item sets (e.g. ShapesWorld's rendered splits) are found through the registry:
:func:`world_items`.
"""

from __future__ import annotations

import os
from pathlib import Path

from dptune.data.eval_items import ITM_DIRECTIONS, ImageRef, ITMItem, RECItem


def world_items(name: str, n_items: int, noise_seed: int = 0) -> tuple[list[ITMItem], list[RECItem]]:
    """(ITM items, REC items) of a world's discriminative set ``name`` (e.g. 'shapesworld-id')."""
    from dptune.plugins import disc_set_names, world_of_disc_set

    world = world_of_disc_set(name)
    if world is None:
        raise ValueError(
            f"unknown discriminative set {name!r}; registered sets: {disc_set_names()} (use --itm-json for "
            "HN-MSCOCO and --rec-file for RefCOCO)"
        )
    return world.disc_sets[name](n_items, noise_seed)


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


__all__ = [
    "ITM_DIRECTIONS", "ITMItem", "ImageRef", "RECItem", "load_hn_coco_items", "load_refcoco_items",
    "world_items",
]
