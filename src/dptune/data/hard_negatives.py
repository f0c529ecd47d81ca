"""The mined hard-negative index (written by ``dptune data mine-negatives``, read by the datasets).

JSON layout (ids are COCO ids; lists are ordered best = most similar first)::

    {"format": "dptune-hard-negatives", "version": 1, "embedder": "...", "text_only": false,
     "captions_file": "...", "k_captions": 20, "k_images": 4, "num_images": N, "num_captions": M,
     "hn_captions": {"<image_id>": [caption_id, ...]}, "hn_caption_scores": {"<image_id>": [cos, ...]},
     "hn_images": {"<caption_id>": [image_id, ...]}, "hn_image_scores": {"<caption_id>": [cos, ...]}}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dptune.data.coco import CocoCaptions
from dptune.data.formats import DataFormatError, check_format, read_json, require_keys

HN_FORMAT = "dptune-hard-negatives"
HN_VERSION = 1
_FIX = "create it with `dptune data mine-negatives --captions captions_train2014.json ...`"


class HardNegatives:
    """Top-k hard-negative captions per image and top-k hard-negative images per caption."""

    def __init__(self, data: dict[str, Any], source: str = "") -> None:
        self.meta = {k: v for k, v in data.items() if not k.startswith("hn_")}
        self.source = source
        self._captions = {int(k): [int(c) for c in v] for k, v in data["hn_captions"].items()}
        self._images = {int(k): [int(i) for i in v] for k, v in data["hn_images"].items()}

    @classmethod
    def load(cls, path: str | Path) -> HardNegatives:
        path = Path(path)
        data = check_format(read_json(path, "hard-negative index", _FIX), path, HN_FORMAT, HN_VERSION, _FIX)
        require_keys(data, ("hn_captions", "hn_images"), f"{path} (top level)", _FIX)
        return cls(data, source=str(path))

    def captions_for(self, image_id: int) -> list[int]:
        """Hard-negative caption ids of an image, most similar first."""
        return self._captions.get(image_id, [])

    def images_for(self, caption_id: int) -> list[int]:
        """Hard-negative image ids of a caption, most similar first."""
        return self._images.get(caption_id, [])

    def check_covers(self, coco: CocoCaptions, image_ids: set[int] | None = None) -> None:
        """Raise unless every needed image (and each of its captions) has mined negatives from ``coco``."""
        ids = sorted(image_ids) if image_ids is not None else [im.image_id for im in coco.images]
        fix = f"re-run mine-negatives on {coco.source or 'the same captions file'} (the index is {self.source})"
        for image_id in ids:
            if not self._captions.get(image_id):
                raise DataFormatError(f"image {image_id} has no mined hard-negative captions; {fix}")
            for neg in self._captions[image_id]:
                if neg not in coco.caption_by_id:
                    raise DataFormatError(f"hard-negative caption {neg} of image {image_id} is not in "
                                          f"{coco.source}; the index was mined on another file; {fix}")
            for cap in coco.captions_of(image_id):
                negs = self._images.get(cap.caption_id)
                if not negs:
                    raise DataFormatError(f"caption {cap.caption_id} (image {image_id}) has no mined "
                                          f"hard-negative images; {fix}")
                missing = [i for i in negs if i not in coco.image_by_id]
                if missing:
                    raise DataFormatError(f"hard-negative image {missing[0]} of caption {cap.caption_id} is not "
                                          f"in {coco.source}; the index was mined on another file; {fix}")
