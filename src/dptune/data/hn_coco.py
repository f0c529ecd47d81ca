"""HN-MSCOCO: the hard-negative ITM test set of paper Appendix B.1 ("Benchmarks for Evaluation of Discrimination").

Image-to-text: per image, one positive caption and 3 negatives sampled from its top-20 mined captions.
Text-to-image: per positive caption, its image and 3 negatives sampled from its top-4 mined images.
Chance accuracy is therefore 25% in both directions (paper Table 10).

Output JSON (positive always first, ``label`` = 0; evaluators may shuffle candidates themselves)::

    {"format": "dptune-hn-mscoco", "version": 1, "n_negatives": 3, "seed": 0, "captions_file": "...",
     "negatives_file": "...", "image_dir": "...",
     "i2t": [{"image_id", "file_name", "caption_ids": [pos, n1, n2, n3], "captions": [...], "label": 0}],
     "t2i": [{"caption_id", "caption", "image_ids": [pos, n1, n2, n3], "file_names": [...], "label": 0}]}
"""

from __future__ import annotations

import random
from pathlib import Path

from dptune.data.coco import CocoCaptions
from dptune.data.configs import HNCocoConfig
from dptune.data.formats import DataFormatError
from dptune.data.hard_negatives import HardNegatives
from dptune.utils.io import save_json

HN_COCO_FORMAT = "dptune-hn-mscoco"
HN_COCO_VERSION = 1


def _draw(rng: random.Random, pool: list[int], n: int, what: str) -> list[int]:
    if len(pool) < n:
        raise DataFormatError(f"{what} has only {len(pool)} mined negatives, {n} are needed; re-mine with a "
                              f"larger k or lower n_negatives")
    return rng.sample(pool, n)


def build_hn_coco(coco: CocoCaptions, negatives: HardNegatives, out: str | Path,
                  config: HNCocoConfig | None = None) -> dict:
    """Build HN-MSCOCO from a captions file (the paper uses COCO's test images) and its mined negatives."""
    cfg = config or HNCocoConfig()
    rng = random.Random(cfg.seed)
    images = coco.images[: cfg.max_images] if cfg.max_images else coco.images
    negatives.check_covers(coco, {im.image_id for im in images})
    text, file_of = coco.caption_by_id, {im.image_id: im.file_name for im in coco.images}
    i2t, t2i = [], []
    for im in images:
        pos = rng.choice(coco.captions_of(im.image_id))
        neg_caps = _draw(rng, negatives.captions_for(im.image_id), cfg.n_negatives, f"image {im.image_id}")
        cap_ids = [pos.caption_id, *neg_caps]
        i2t.append({"image_id": im.image_id, "file_name": im.file_name, "caption_ids": cap_ids,
                    "captions": [text[c].text for c in cap_ids], "label": 0})
        neg_imgs = _draw(rng, negatives.images_for(pos.caption_id), cfg.n_negatives, f"caption {pos.caption_id}")
        img_ids = [im.image_id, *neg_imgs]
        t2i.append({"caption_id": pos.caption_id, "caption": pos.text, "image_ids": img_ids,
                    "file_names": [file_of[i] for i in img_ids], "label": 0})
    data = {"format": HN_COCO_FORMAT, "version": HN_COCO_VERSION, "n_negatives": cfg.n_negatives,
            "seed": cfg.seed, "captions_file": coco.source, "negatives_file": negatives.source,
            "image_dir": str(coco.image_dir) if coco.image_dir else None, "i2t": i2t, "t2i": t2i}
    save_json(out, data)
    return {"out": str(out), "i2t": len(i2t), "t2i": len(t2i)}
