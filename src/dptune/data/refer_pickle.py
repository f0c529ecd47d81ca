"""One-time, explicit conversion of refer-format pickles (``refs(unc).p`` / ``refs(umd).p``) to a JSON index.

The refer toolkit (lichengunc/refer) ships each dataset as ``<dataset>/refs(<splitBy>).p`` (a Python-2
pickle: a list of dicts ``{ref_id, ann_id, image_id, split, sentences: [{sent, raw, sent_id, ...}], ...}``)
plus ``<dataset>/instances.json`` (COCO format; boxes are ``bbox`` xywh in pixels). Unpickling can run
arbitrary code, so the pickle is read exactly once, here, with an unpickler that refuses every global
except a few harmless builtins; the rest of dptune reads the JSON index this module writes.
"""

from __future__ import annotations

import builtins
import io
import pickle
from pathlib import Path
from typing import Any

from dptune.data.formats import DataFormatError, read_json, require_keys
from dptune.data.refcoco import REFER_INDEX_FORMAT, REFER_INDEX_VERSION, RefRecord, validate_box
from dptune.utils.io import save_json

# Default refs file per dataset (paper/MDETR: RefCOCO and RefCOCO+ "unc" splits, RefCOCOg "umd" split).
DEFAULT_SPLIT_BY = {"refcoco": "unc", "refcoco+": "unc", "refcocog": "umd"}
_ALLOWED_GLOBALS = {"dict", "list", "str", "int", "float", "tuple"}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler for plain data: only builtins dict/list/str/int/float/tuple may be named; nothing else.

    Plain containers and scalars are rebuilt from opcodes without naming any global, so refer files load;
    any class or function reference (the way pickles run code) raises ``pickle.UnpicklingError``.
    """

    def find_class(self, module: str, name: str) -> Any:
        if module in ("builtins", "__builtin__") and name in _ALLOWED_GLOBALS:
            return getattr(builtins, name)
        raise pickle.UnpicklingError(
            f"refusing to load global {module}.{name}: refer pickles hold only plain lists/dicts/strings, so "
            f"this file is not an official refs(*).p file (or it was tampered with); re-download it"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refusing persistent ids in a refer pickle; re-download the file")


def restricted_load(path: str | Path) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler` (latin1 decodes Python-2 byte strings)."""
    data = Path(path).read_bytes()
    return RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()


def _choose_refs_file(ds_dir: Path, split_by: str | None) -> Path:
    candidates = sorted(ds_dir.glob("refs(*).p"))
    wanted = split_by or DEFAULT_SPLIT_BY.get(ds_dir.name)
    if wanted is not None and (ds_dir / f"refs({wanted}).p").is_file():
        return ds_dir / f"refs({wanted}).p"
    if split_by is None and len(candidates) == 1:
        return candidates[0]
    names = [c.name for c in candidates]
    raise FileNotFoundError(
        f"{ds_dir}: cannot pick a refs file (wanted refs({wanted}).p, found {names or 'none'}); "
        f"pass --split-by {ds_dir.name}=<unc|umd|google> or add the official refs file"
    )


def find_refer_datasets(refer_dir: str | Path) -> list[Path]:
    """Dataset folders under ``refer_dir`` (or ``refer_dir`` itself) that hold ``instances.json``."""
    root = Path(refer_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"refer folder {root} does not exist; pass the folder holding refcoco/, "
                                f"refcoco+/, refcocog/ (each with refs(*).p and instances.json)")
    if (root / "instances.json").is_file():
        return [root]
    found = sorted(p for p in root.iterdir() if p.is_dir() and (p / "instances.json").is_file())
    if not found:
        raise FileNotFoundError(f"no dataset folder with instances.json under {root}; expected refcoco/, "
                                f"refcoco+/ or refcocog/ from the refer toolkit downloads")
    return found


def _instances_lookup(path: Path) -> tuple[dict[int, dict], dict[int, dict]]:
    fix = "use the instances.json shipped beside the refs(*).p file"
    data = read_json(path, "refer instances file", fix)
    require_keys(data, ("images", "annotations"), f"{path} (top level)", fix)
    images = {int(im["id"]): im for im in data["images"]}
    anns = {int(a["id"]): a for a in data["annotations"]}
    return images, anns


def _records_for_ref(ref: Any, i: int, dataset: str, refs_path: Path, images: dict, anns: dict) -> list[RefRecord]:
    where = f"{refs_path}: ref #{i}"
    require_keys(ref, ("ref_id", "ann_id", "image_id", "split", "sentences"), where,
                 "this is not an official refer refs(*).p file; re-download it")
    ann, img = anns.get(int(ref["ann_id"])), images.get(int(ref["image_id"]))
    if ann is None or img is None:
        raise DataFormatError(f"{where} (ref_id {ref['ref_id']}) points at ann {ref['ann_id']} / image "
                              f"{ref['image_id']} missing from instances.json; use the matching instances.json")
    box = validate_box(ann["bbox"], int(img["width"]), int(img["height"]), f"{where} (ref_id {ref['ref_id']})")
    out = []
    for j, sent in enumerate(ref["sentences"]):
        text = " ".join(str(sent.get("sent") or sent.get("raw") or "").split())
        if not text:
            raise DataFormatError(f"{where} (ref_id {ref['ref_id']}) sentence {j} is empty; re-download the file")
        out.append(RefRecord(
            ref_id=f"{dataset}:{ref['ref_id']}:{sent.get('sent_id', j)}",
            image_id=int(ref["image_id"]), file_name=str(img["file_name"]),
            width=int(img["width"]), height=int(img["height"]), bbox=box, expression=text,
            dataset=dataset, split=str(ref["split"]),
        ))
    return out


def convert_dataset(ds_dir: Path, split_by: str | None = None) -> tuple[list[RefRecord], dict[str, Any]]:
    """Convert one refer dataset folder; returns its records and a provenance entry for the index."""
    refs_path = _choose_refs_file(ds_dir, split_by)
    images, anns = _instances_lookup(ds_dir / "instances.json")
    try:
        refs = restricted_load(refs_path)
    except pickle.UnpicklingError as e:
        raise DataFormatError(f"{refs_path}: {e}") from e
    except (EOFError, ValueError, UnicodeDecodeError) as e:
        raise DataFormatError(f"{refs_path} is not a readable refer pickle ({e}); re-download it") from e
    if not isinstance(refs, list):
        raise DataFormatError(f"{refs_path} holds a {type(refs).__name__}, expected the refer list of refs")
    records = []
    for i, ref in enumerate(refs):
        records.extend(_records_for_ref(ref, i, ds_dir.name, refs_path, images, anns))
    source = {"dataset": ds_dir.name, "refs_file": str(refs_path), "refs": len(refs), "expressions": len(records)}
    return records, source


def convert_refer(refer_dir: str | Path, out: str | Path, split_by: dict[str, str] | None = None) -> dict:
    """Convert every refer dataset under ``refer_dir`` into one JSON index at ``out`` (written atomically)."""
    split_by = split_by or {}
    records: list[RefRecord] = []
    sources = []
    for ds_dir in find_refer_datasets(refer_dir):
        recs, src = convert_dataset(ds_dir, split_by.get(ds_dir.name))
        records.extend(recs)
        sources.append(src)
    index = {
        "format": REFER_INDEX_FORMAT,
        "version": REFER_INDEX_VERSION,
        "sources": sources,
        "records": [r.to_json() for r in records],
    }
    save_json(out, index)
    return {"out": str(out), "expressions": len(records), "sources": sources}
