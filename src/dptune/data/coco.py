"""MS-COCO 2014 captions: ``annotations/captions_{train,val}2014.json`` + ``{train,val}2014/`` image folder.

The captions file is COCO JSON with ``images[] = {id, file_name, width, height, ...}`` and
``annotations[] = {id, image_id, caption}`` (about five captions per image). Paper Appendix B.1 uses the
train2014 split (82,783 images, 414,113 captions) for ITM.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from dptune.data.formats import DataFormatError, read_json, require_keys

_FIX = "pass annotations/captions_train2014.json or captions_val2014.json from cocodataset.org"


@dataclass(frozen=True)
class CocoImage:
    image_id: int
    file_name: str  # e.g. COCO_train2014_000000000009.jpg
    width: int
    height: int


@dataclass(frozen=True)
class CocoCaption:
    caption_id: int  # the COCO annotation id: unique over the whole file
    image_id: int
    text: str


class CocoCaptions:
    """Images (sorted by id) that have at least one caption, and their captions (grouped by image)."""

    def __init__(self, images: list[CocoImage], captions: list[CocoCaption], image_dir: Path | None,
                 source: str = "") -> None:
        self.images = sorted(images, key=lambda im: im.image_id)
        self.captions = sorted(captions, key=lambda c: (c.image_id, c.caption_id))
        self.image_dir = Path(image_dir) if image_dir is not None else None
        self.source = source
        self.image_by_id = {im.image_id: im for im in self.images}
        self.caption_by_id = {c.caption_id: c for c in self.captions}
        self._captions_of: dict[int, list[CocoCaption]] = {}
        for c in self.captions:
            self._captions_of.setdefault(c.image_id, []).append(c)

    def __repr__(self) -> str:
        return f"CocoCaptions({len(self.images)} images, {len(self.captions)} captions, source={self.source!r})"

    def captions_of(self, image_id: int) -> list[CocoCaption]:
        return self._captions_of.get(image_id, [])

    def image_path(self, image_id: int) -> Path:
        if self.image_dir is None:
            raise ValueError("no COCO image folder was given; pass image_dir (--image-dir), e.g. coco/train2014")
        return self.image_dir / self.image_by_id[image_id].file_name


def default_image_dir(captions_file: str | Path) -> Path | None:
    """``root/annotations/captions_train2014.json`` -> ``root/train2014`` (the official layout), else None."""
    path = Path(captions_file)
    m = re.match(r"captions_(\w+?)(\d{4})\.json$", path.name)
    if m is None:
        return None
    return path.parent.parent / f"{m.group(1)}{m.group(2)}"


def _parse_images(data: dict, path: Path) -> dict[int, CocoImage]:
    images: dict[int, CocoImage] = {}
    for i, rec in enumerate(data["images"]):
        where = f"{path}: images[{i}]"
        require_keys(rec, ("id", "file_name", "width", "height"), where, _FIX)
        images[int(rec["id"])] = CocoImage(int(rec["id"]), str(rec["file_name"]), int(rec["width"]),
                                           int(rec["height"]))
    return images


def _parse_captions(data: dict, path: Path, images: dict[int, CocoImage]) -> list[CocoCaption]:
    captions: list[CocoCaption] = []
    for i, rec in enumerate(data["annotations"]):
        where = f"{path}: annotations[{i}]"
        require_keys(rec, ("id", "image_id", "caption"), where,
                     "a captions file is needed (instances_*.json has boxes, not captions); " + _FIX)
        if int(rec["image_id"]) not in images:
            raise DataFormatError(
                f"{where} (caption id {rec['id']}) refers to image {rec['image_id']}, which is not in images[]; "
                f"the file is inconsistent, re-download it"
            )
        text = " ".join(str(rec["caption"]).split())  # COCO captions carry stray newlines/double spaces
        if not text:
            raise DataFormatError(f"{where} (caption id {rec['id']}) has an empty caption; remove this record")
        captions.append(CocoCaption(int(rec["id"]), int(rec["image_id"]), text))
    return captions


def load_coco_captions(captions_file: str | Path, image_dir: str | Path | None = None) -> CocoCaptions:
    """Load a COCO captions file; ``image_dir`` defaults to the official sibling folder when it exists.

    Images without any caption are dropped (they can be neither positives nor negatives for ITM).
    """
    path = Path(captions_file)
    data = read_json(path, "COCO captions file", _FIX)
    require_keys(data, ("images", "annotations"), f"{path} (top level)", _FIX)
    images = _parse_images(data, path)
    captions = _parse_captions(data, path, images)
    if not captions:
        raise DataFormatError(f"{path} holds no captions; " + _FIX)
    if image_dir is None:
        guess = default_image_dir(path)
        image_dir = guess if guess is not None and guess.is_dir() else None
    elif not Path(image_dir).is_dir():
        raise FileNotFoundError(f"COCO image folder {image_dir} does not exist; pass the folder holding "
                                f"COCO_*2014_*.jpg (e.g. coco/train2014)")
    with_caption = {c.image_id for c in captions}
    kept = [im for im_id, im in images.items() if im_id in with_caption]
    return CocoCaptions(kept, captions, Path(image_dir) if image_dir else None, source=str(path))
