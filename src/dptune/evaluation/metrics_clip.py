"""CLIP score (paper Sec. 4.1, footnote 3: OpenCLIP ViT-H-14) from LOCAL weights.

Per image: ``score = 100 * max(cos(image, text), 0)`` (the torchmetrics / CLIPScore convention, which is how
the paper's ~33-40 values read); the raw cosine is kept as ``cosine``.

Two backends:

* ``open_clip`` -- ``CLIPScorer.from_open_clip("ViT-H-14", "/path/open_clip_pytorch_model.bin")`` (the
  paper's model: laion2b_s32b_b79k). open_clip needs torchvision; it is imported only here.
* ``transformers`` -- ``CLIPScorer.from_transformers(DIR)`` with a local ``CLIPModel`` folder (e.g.
  laion/CLIP-ViT-H-14-laion2B-s32B-b79K or openai/clip-vit-large-patch14); preprocessing is PIL + numpy.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dptune.evaluation.metrics_common import (
    MissingDependencyError,
    MissingWeightsError,
    image_settings,
    preprocess,
    require_hf_folder,
)


class CLIPScorer:
    """Callable scorer ``(uint8 images (B, H, W, 3), prompts) -> [{score, cosine}, ...]``."""

    def __init__(
        self,
        embed_images: Callable[[np.ndarray], torch.Tensor],
        embed_texts: Callable[[list[str]], torch.Tensor],
        description: str,
        batch_size: int = 32,
    ):
        self.embed_images, self.embed_texts = embed_images, embed_texts
        self.description, self.batch_size = description, batch_size

    @classmethod
    def from_transformers(cls, path: str | os.PathLike | None, device: str = "cpu") -> CLIPScorer:
        from transformers import AutoTokenizer, CLIPModel

        folder = require_hf_folder(
            path, "CLIP score (transformers CLIPModel)", "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
        )
        model = CLIPModel.from_pretrained(folder, local_files_only=True).to(device).eval()
        tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        size, mean, std, crop = image_settings(folder, int(model.config.vision_config.image_size))
        max_len = int(model.config.text_config.max_position_embeddings)

        @torch.no_grad()
        def embed_images(images: np.ndarray) -> torch.Tensor:
            px = preprocess(images, size, mean, std, center_crop=crop).to(device)
            return _features(model.get_image_features(pixel_values=px))  # (B, D)

        @torch.no_grad()
        def embed_texts(texts: list[str]) -> torch.Tensor:
            enc = tok(texts, padding=True, truncation=True, max_length=max_len, return_tensors="pt").to(
                device
            )
            return _features(model.get_text_features(**enc))  # (B, D)

        return cls(embed_images, embed_texts, f"transformers CLIPModel {folder}")

    @classmethod
    def from_open_clip(
        cls, arch: str, checkpoint: str | os.PathLike | None, device: str = "cpu", quick_gelu: bool = False
    ) -> CLIPScorer:
        """open_clip model ``arch`` with weights from a local file (``quick_gelu`` for OpenAI weights)."""
        try:
            import open_clip
        except ImportError as e:
            raise MissingDependencyError(
                "CLIP score with open_clip needs `pip install open_clip_torch` (which needs torchvision); "
                "or use the transformers backend with a local CLIPModel folder (--clip-backend transformers)"
            ) from e
        if checkpoint is None or not Path(checkpoint).expanduser().is_file():
            raise MissingWeightsError(
                f"open_clip weights file {checkpoint} is missing; download open_clip_pytorch_model.bin of "
                f"{arch} (the paper: laion/CLIP-ViT-H-14-laion2B-s32B-b79K) and pass its path"
            )
        model, _, transform = open_clip.create_model_and_transforms(
            arch, pretrained=str(Path(checkpoint).expanduser()), force_quick_gelu=quick_gelu, device=device
        )
        model.eval()
        tokenizer = open_clip.get_tokenizer(arch)

        @torch.no_grad()
        def embed_images(images: np.ndarray) -> torch.Tensor:
            from PIL import Image

            px = torch.stack([transform(Image.fromarray(im)) for im in images]).to(device)
            return model.encode_image(px).float()

        @torch.no_grad()
        def embed_texts(texts: list[str]) -> torch.Tensor:
            return model.encode_text(tokenizer(texts).to(device)).float()

        return cls(embed_images, embed_texts, f"open_clip {arch} {checkpoint}")

    def cosine(self, images: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        """Cosine similarity of each image with its own text -> (B,)."""
        if len(images) != len(texts):
            raise ValueError(f"got {len(images)} images but {len(texts)} texts; pass one text per image")
        out = []
        for a in range(0, len(texts), self.batch_size):
            im = torch.nn.functional.normalize(
                self.embed_images(images[a : a + self.batch_size]).float(), dim=-1
            )
            tx = torch.nn.functional.normalize(
                self.embed_texts(list(texts[a : a + self.batch_size])).float(), dim=-1
            )
            out.append((im * tx).sum(-1).cpu().numpy())  # (b,)
        return np.concatenate(out)

    def __call__(self, images: np.ndarray, prompts: Sequence[Any]) -> list[dict[str, float]]:
        texts = [getattr(p, "text", p) for p in prompts]
        cos = self.cosine(images, texts)
        return [{"score": 100.0 * max(float(c), 0.0), "cosine": float(c)} for c in cos]


def _features(out: Any) -> torch.Tensor:
    """transformers >= 5 returns a model output from get_*_features (projected pooler_output); <5 a tensor."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output
