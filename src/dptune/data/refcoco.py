"""RefCOCO / RefCOCO+ / RefCOCOg referring expressions (paper Appendix B.1: merged as "RefCOCOall").

Two on-disk sources are read, both JSON:

* the dptune refer index written by ``dptune data convert-refer`` from the refer-format ``refs(unc).p`` /
  ``refs(umd).p`` pickles + ``instances.json`` (see :mod:`dptune.data.refer_pickle`);
* MDETR's ``finetune_{refcoco,refcoco+,refcocog}_{split}.json``: COCO format with one ``images[]`` entry per
  expression (``caption``, ``original_id`` = COCO image id, ``file_name``, ``width``, ``height``) and one
  ``annotations[]`` entry for it (``bbox`` xywh in pixels, ``tokens_positive`` character spans).

Every expression becomes one :class:`RefRecord` whose box is validated against its image size.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dptune.data.formats import DataFormatError, check_format, read_json, require_keys

REFER_INDEX_FORMAT = "dptune-refer-index"
REFER_INDEX_VERSION = 1
BOX_TOLERANCE_PX = 1.0  # COCO boxes are floats; edges up to one pixel past the image are rounding, not errors


@dataclass(frozen=True)
class RefRecord:
    """One referring expression with its gold box (COCO xywh, pixels of the original image)."""

    ref_id: str  # "<dataset>:<ref_id>:<sent_id>" for refer data, "<file stem>:<image entry id>" for MDETR
    image_id: int  # COCO image id
    file_name: str  # COCO image file, e.g. COCO_train2014_000000581857.jpg
    width: int
    height: int
    bbox: tuple[float, float, float, float]
    expression: str
    dataset: str  # refcoco / refcoco+ / refcocog
    split: str  # train / val / testA / testB / test
    tokens_positive: tuple[tuple[int, int], ...] | None = None  # MDETR char spans of the referred noun phrase

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def validate_box(bbox: Any, width: int, height: int, where: str) -> tuple[float, float, float, float]:
    """Check an xywh box lies inside its image (1 px tolerance) and clip it; raise naming the record."""
    fix = "fix or remove this record in the annotation file (or re-run convert-refer on the official files)"
    if not isinstance(bbox, list | tuple) or len(bbox) != 4:
        raise DataFormatError(f"{where} has bbox {bbox!r}, expected [x, y, w, h] in pixels; {fix}")
    x, y, w, h = (float(v) for v in bbox)
    if width <= 0 or height <= 0:
        raise DataFormatError(f"{where} has image size {width}x{height}; {fix}")
    tol = BOX_TOLERANCE_PX
    if w <= 0 or h <= 0 or x < -tol or y < -tol or x + w > width + tol or y + h > height + tol:
        raise DataFormatError(
            f"{where} has box [x={x:g}, y={y:g}, w={w:g}, h={h:g}] outside its {width}x{height} image "
            f"(or empty); {fix}"
        )
    x0, y0 = max(x, 0.0), max(y, 0.0)
    x1, y1 = min(x + w, float(width)), min(y + h, float(height))
    return (x0, y0, x1 - x0, y1 - y0)


def _record_from_json(rec: Any, where: str) -> RefRecord:
    keys = ("ref_id", "image_id", "file_name", "width", "height", "bbox", "expression", "dataset", "split")
    require_keys(rec, keys, where, "re-create the index with `dptune data convert-refer`")
    spans = rec.get("tokens_positive")
    return RefRecord(
        ref_id=str(rec["ref_id"]),
        image_id=int(rec["image_id"]),
        file_name=str(rec["file_name"]),
        width=int(rec["width"]),
        height=int(rec["height"]),
        bbox=validate_box(rec["bbox"], int(rec["width"]), int(rec["height"]), where),
        expression=str(rec["expression"]),
        dataset=str(rec["dataset"]),
        split=str(rec["split"]),
        tokens_positive=tuple(tuple(int(v) for v in s) for s in spans) if spans else None,
    )


def load_refer_index(path: str | Path, data: Any = None) -> list[RefRecord]:
    """Read the JSON index written by ``dptune data convert-refer`` (``data``: already parsed content)."""
    path = Path(path)
    fix = "create it with `dptune data convert-refer --refer-dir DIR --out index.json`"
    if data is None:
        data = read_json(path, "refer index", fix)
    check_format(data, path, REFER_INDEX_FORMAT, REFER_INDEX_VERSION, fix)
    records = data.get("records")
    if not isinstance(records, list):
        raise DataFormatError(f"{path} lacks the 'records' list; {fix}")
    return [_record_from_json(r, f"{path}: records[{i}]") for i, r in enumerate(records)]


def _mdetr_name_split(path: Path) -> tuple[str, str]:
    """``finetune_refcoco+_testA.json`` -> (``refcoco+``, ``testA``); unknown names -> (stem, ``unknown``)."""
    m = re.match(r"finetune_(.+)_([A-Za-z]+)\.json$", path.name)
    return (m.group(1), m.group(2)) if m else (path.stem, "unknown")


def load_mdetr_refexp(path: str | Path, data: Any = None) -> list[RefRecord]:
    """Read an MDETR refexp json (one image entry + one annotation per expression)."""
    path = Path(path)
    fix = "pass MDETR's finetune_<dataset>_<split>.json (from the MDETR annotations archive)"
    if data is None:
        data = read_json(path, "MDETR refexp file", fix)
    require_keys(data, ("images", "annotations"), f"{path} (top level)", fix)
    name, split = _mdetr_name_split(path)
    boxes: dict[int, dict] = {}
    for i, ann in enumerate(data["annotations"]):
        require_keys(ann, ("image_id", "bbox"), f"{path}: annotations[{i}]", fix)
        if int(ann["image_id"]) in boxes:
            raise DataFormatError(f"{path}: annotations[{i}] is a second box for image entry {ann['image_id']}; "
                                  f"MDETR refexp files hold exactly one box per expression; {fix}")
        boxes[int(ann["image_id"])] = ann
    records = []
    for i, img in enumerate(data["images"]):
        where = f"{path}: images[{i}]"
        require_keys(img, ("id", "file_name", "width", "height", "caption"), where, fix)
        ann = boxes.get(int(img["id"]))
        if ann is None:
            raise DataFormatError(f"{where} (expression {img['caption']!r}) has no annotation with its box; {fix}")
        spans = ann.get("tokens_positive")
        records.append(RefRecord(
            ref_id=f"{path.stem}:{img['id']}",
            image_id=int(img.get("original_id", img["id"])),
            file_name=str(img["file_name"]),
            width=int(img["width"]),
            height=int(img["height"]),
            bbox=validate_box(ann["bbox"], int(img["width"]), int(img["height"]),
                              f"{where} (expression {img['caption']!r})"),
            expression=" ".join(str(img["caption"]).split()),
            dataset=str(img.get("dataset_name", name)),
            split=split,
            tokens_positive=tuple(tuple(int(v) for v in s) for s in spans) if spans else None,
        ))
    return records


def load_ref_records(path: str | Path, splits: list[str] | None = None) -> list[RefRecord]:
    """Load referring expressions from a dptune refer index or an MDETR json, optionally keeping ``splits``.

    Refer-format pickles are refused here on purpose: they can execute code when loaded, so they must be
    converted once, explicitly, with ``dptune data convert-refer``.
    """
    path = Path(path)
    if path.suffix == ".p" or path.suffix == ".pkl":
        raise DataFormatError(
            f"{path} is a refer-format pickle; pickles can run code when loaded, so dptune never opens them "
            f"implicitly. Convert once with `dptune data convert-refer --refer-dir {path.parent} --out "
            f"refer_index.json` and pass the JSON index instead"
        )
    data = read_json(path, "referring-expression file",
                     "pass a refer index from `dptune data convert-refer` or an MDETR finetune_*.json")
    if isinstance(data, dict) and data.get("format") == REFER_INDEX_FORMAT:
        records = load_refer_index(path, data)
    else:
        records = load_mdetr_refexp(path, data)
    if splits:
        records = [r for r in records if r.split in splits]
        if not records:
            raise DataFormatError(f"{path} holds no expressions of split(s) {splits}; check the split names "
                                  f"(refcoco/+: train, val, testA, testB; refcocog umd: train, val, test)")
    return records
