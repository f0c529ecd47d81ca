"""BLIP scores (paper Sec. 4.1: BLIP-ITM "BLIP-M" and BLIP-ITC "BLIP-C") from a LOCAL transformers folder.

Per image: ``score`` = 100 x P(match) from the image-text matching head (BLIP-M) and ``itc`` = 100 x the
cosine of the contrastive projections (BLIP-C). The paper used BLIP-2 (pretrain); both model families load:

* ``model_type`` "blip"   -> ``BlipForImageTextRetrieval`` (e.g. Salesforce/blip-itm-large-coco);
* ``model_type`` "blip-2" -> ``Blip2ForImageTextRetrieval`` (e.g. Salesforce/blip2-itm-vit-g).

Images are resized to the model's square input with PIL (no torchvision), normalised with the folder's
``preprocessor_config.json`` (CLIP mean/std otherwise).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from dptune.evaluation.metrics_common import image_settings, preprocess, require_hf_folder

MODEL_TYPES = ("blip", "blip-2")


class BLIPScorer:
    """Callable scorer ``(uint8 images (B, H, W, 3), prompts) -> [{score (ITM), itc}, ...]``."""

    def __init__(
        self,
        model,
        tokenizer,
        model_type: str,
        size: int,
        mean,
        std,
        device: str = "cpu",
        batch_size: int = 16,
        description: str = "",
    ):
        self.model, self.tokenizer, self.model_type = model, tokenizer, model_type
        self.size, self.mean, self.std, self.device = size, mean, std, device
        self.batch_size, self.description = batch_size, description

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike | None, device: str = "cpu") -> BLIPScorer:
        from transformers import AutoTokenizer

        folder = require_hf_folder(path, "BLIP score", "Salesforce/blip-itm-large-coco")
        model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
        if model_type == "blip":
            from transformers import BlipForImageTextRetrieval as Model
        elif model_type == "blip-2":
            from transformers import Blip2ForImageTextRetrieval as Model
        else:
            raise ValueError(
                f"{folder} holds a {model_type!r} model; the BLIP score needs one of {MODEL_TYPES} "
                "(BlipForImageTextRetrieval or Blip2ForImageTextRetrieval)"
            )
        model = Model.from_pretrained(folder, local_files_only=True).to(device).eval()
        tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        size, mean, std, _ = image_settings(folder, int(model.config.vision_config.image_size))
        return cls(model, tok, model_type, size, mean, std, device, description=f"{model_type} {folder}")

    @torch.no_grad()
    def _batch(self, images: np.ndarray, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        px = preprocess(images, self.size, self.mean, self.std, center_crop=False).to(self.device)
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt").to(
            self.device
        )
        if self.model_type == "blip":
            itm = self.model(**enc, pixel_values=px, use_itm_head=True).itm_score  # (B, 2) logits
            itc = self.model(**enc, pixel_values=px, use_itm_head=False).itm_score  # (B, B) cosines
        else:
            itm = self.model(
                **enc, pixel_values=px, use_image_text_matching_head=True
            ).logits_per_image  # (B, 2)
            itc = self.model(
                **enc, pixel_values=px, use_image_text_matching_head=False
            ).logits_per_image  # (B, B)
        p_match = itm.float().softmax(-1)[:, 1]  # (B,)
        return p_match.cpu().numpy(), torch.diagonal(itc.float()).cpu().numpy()  # paired image i <-> text i

    def __call__(self, images: np.ndarray, prompts: Sequence[Any]) -> list[dict[str, float]]:
        texts = [getattr(p, "text", p) for p in prompts]
        if len(images) != len(texts):
            raise ValueError(f"got {len(images)} images but {len(texts)} texts; pass one text per image")
        out = []
        for a in range(0, len(texts), self.batch_size):
            pm, cos = self._batch(images[a : a + self.batch_size], texts[a : a + self.batch_size])
            out += [
                {"score": 100.0 * float(p), "itc": 100.0 * float(c)} for p, c in zip(pm, cos, strict=True)
            ]
        return out
