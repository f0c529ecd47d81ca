"""COCO + RefCOCOall septuples for DPT training (paper Appendix B.1, data sampling steps 1-5).

For dataset index ``i`` (one per referring expression):

1. the expression y' = ``refs[i]`` and its image x (and gold box);
2. a caption y drawn uniformly from the positive COCO captions of x;
3. a hard-negative caption y_neg drawn uniformly from the top-k (20) mined captions of x;
4. a hard-negative image x_neg drawn uniformly from the top-k (4) mined images of y;
5. a random image x_rand (any image but x) and a random caption y_rand (any caption not of x).

So in the paper the ITM image and the REC image are the same picture x; ``rec_same_image=False`` instead
draws the ITM image uniformly from all COCO images, independently of the expression.

Draws are seeded per (seed, epoch, index), so a sample is reproducible; call :meth:`set_epoch` to redraw.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from dptune.data.coco import CocoCaptions
from dptune.data.configs import CocoRefConfig
from dptune.data.formats import DataFormatError
from dptune.data.hard_negatives import HardNegatives
from dptune.data.images import load_image_tensor, xywh_to_cxcywh_norm
from dptune.data.interface import DPTSample
from dptune.data.latent_cache import LatentCache
from dptune.data.refcoco import RefRecord


@dataclass(frozen=True)
class SamplePlan:
    """The ids one sample is made of (what ``__getitem__`` loads); handy for tests and debugging."""

    image_id: int
    caption_id: int
    hn_caption_id: int
    rand_caption_id: int
    hn_image_id: int
    rand_image_id: int
    ref: RefRecord


class CocoRefDataset:
    """:class:`~dptune.data.interface.DPTDataset` over COCO captions + RefCOCO/+/g expressions.

    With ``latents`` (a :class:`LatentCache` built at the same ``image_size``) the image fields
    (``image``, ``hn_image``, ``rand_image``, ``ref_image``) hold cached, already scaled VAE latents of shape
    (C, h, w) instead of (3, H, W) pixels in [-1, 1]; the training loop must then skip ``encode_images``.
    ``ref_box`` is normalised (cx, cy, w, h) either way (a square resize leaves normalised boxes unchanged).
    """

    def __init__(self, coco: CocoCaptions, refs: Sequence[RefRecord], negatives: HardNegatives,
                 config: CocoRefConfig | None = None, latents: LatentCache | None = None) -> None:
        self.config = config or CocoRefConfig()
        self.coco, self.negatives, self.latents = coco, negatives, latents
        self.refs = self._check_refs(list(refs))
        self.epoch = 0
        self._image_ids = [im.image_id for im in coco.images]
        needed = set(self._image_ids) if not self.config.rec_same_image else {r.image_id for r in self.refs}
        negatives.check_covers(coco, needed)
        if latents is not None:
            self._check_latents(latents)
        elif coco.image_dir is None:
            raise ValueError("CocoRefDataset needs the COCO image folder (image_dir) or a latent cache")

    def _check_refs(self, refs: list[RefRecord]) -> list[RefRecord]:
        if not refs:
            raise ValueError("no referring expressions given; pass a refer index or MDETR json with records")
        missing = [r for r in refs if r.image_id not in self.coco.image_by_id]
        if missing and not self.config.skip_missing:
            r = missing[0]
            raise DataFormatError(
                f"{len(missing)} of {len(refs)} expressions point at images absent from {self.coco.source}, "
                f"e.g. {r.ref_id} (image {r.image_id}); RefCOCO images are COCO train2014, so pass "
                f"captions_train2014.json, or set skip_missing=True to drop them"
            )
        kept = [r for r in refs if r.image_id in self.coco.image_by_id]
        if not kept:
            raise DataFormatError(f"none of the {len(refs)} expressions has its image in {self.coco.source}")
        return kept

    def _check_latents(self, latents: LatentCache) -> None:
        if latents.image_size != self.config.image_size:
            raise ValueError(f"latent cache {latents.folder} was built at image_size {latents.image_size}, the "
                             f"dataset asks for {self.config.image_size}; use the same size or re-cache")
        absent = [i for i in self._image_ids if i not in latents]
        if absent:
            raise DataFormatError(f"latent cache {latents.folder} lacks {len(absent)} COCO images (e.g. "
                                  f"{absent[0]}); run cache-latents over {self.coco.source}")

    def __len__(self) -> int:
        return len(self.refs)

    def set_epoch(self, epoch: int) -> None:
        """Change the draws of steps 2-5 (the expression of index ``i`` stays ``refs[i]``)."""
        self.epoch = int(epoch)

    def plan(self, index: int) -> SamplePlan:
        """Steps 1-5 of Appendix B.1 as ids (no image I/O)."""
        if not 0 <= index < len(self.refs):
            raise IndexError(f"index {index} out of range for {len(self.refs)} expressions")
        rng = random.Random(f"{self.config.seed}:{self.epoch}:{index}")  # str seeds hash deterministically
        ref = self.refs[index]  # step 1
        image_id = ref.image_id if self.config.rec_same_image else rng.choice(self._image_ids)
        caption = rng.choice(self.coco.captions_of(image_id))  # step 2
        hn_caption_id = rng.choice(self.negatives.captions_for(image_id))  # step 3
        hn_image_id = rng.choice(self.negatives.images_for(caption.caption_id))  # step 4
        return SamplePlan(image_id, caption.caption_id, hn_caption_id, self._random_caption(rng, image_id),
                          hn_image_id, self._random_image(rng, image_id), ref)  # step 5 inside the helpers

    def _random_image(self, rng: random.Random, avoid: int) -> int:
        while True:  # rejection: with >= 2 images this ends quickly
            image_id = rng.choice(self._image_ids)
            if image_id != avoid or len(self._image_ids) == 1:
                return image_id

    def _random_caption(self, rng: random.Random, avoid_image: int) -> int:
        captions = self.coco.captions
        if all(c.image_id == avoid_image for c in captions):
            raise DataFormatError("the captions file holds a single image; random negatives need at least two")
        while True:
            cap = rng.choice(captions)
            if cap.image_id != avoid_image:
                return cap.caption_id

    def _image(self, image_id: int) -> torch.Tensor:
        if self.latents is not None:
            return self.latents[str(image_id)]  # (C, h, w) scaled latents
        path = self.coco.image_path(image_id)
        return load_image_tensor(path, self.config.image_size, f"COCO image {image_id}")  # (3, S, S)

    def __getitem__(self, index: int) -> DPTSample:
        p = self.plan(index)
        text = self.coco.caption_by_id
        image = self._image(p.image_id)
        ref_image = image if p.ref.image_id == p.image_id else self._image(p.ref.image_id)
        return DPTSample(
            image=image,
            caption=text[p.caption_id].text,
            hn_caption=text[p.hn_caption_id].text,
            rand_caption=text[p.rand_caption_id].text,
            hn_image=self._image(p.hn_image_id),
            rand_image=self._image(p.rand_image_id),
            ref_image=ref_image,
            ref_expression=p.ref.expression,
            ref_box=xywh_to_cxcywh_norm(p.ref.bbox, p.ref.width, p.ref.height),  # (4,)
        )
