"""Text/image embedders for hard-negative mining (paper Appendix B.1, footnote 4: OpenCLIP ViT-H-14).

All embedders load weights from a LOCAL path only (dptune never downloads models) and return
L2-normalised float32 embeddings so that a dot product is the cosine similarity.

* ``open_clip``: the paper's choice; needs the ``open_clip_torch`` package (which needs torchvision).
* ``hf_clip``: a ``transformers.CLIPModel`` folder (e.g. a local copy of laion/CLIP-ViT-H-14-laion2B-s32B-b79K);
  images are preprocessed here with PIL + numpy (resize shorter side, centre crop, CLIP mean/std).
* ``sd_text``: fallback without any CLIP image tower: the Stable Diffusion text encoder's pooled output.
  It only measures text-text similarity, so it is weaker: an image is represented by the mean embedding
  of its own captions (hard-negative images of a caption are then images whose captions read alike).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image

EMBEDDER_KINDS = ("open_clip", "hf_clip", "sd_text")
# OpenAI CLIP normalisation constants (also used by LAION OpenCLIP models).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class Embedder(Protocol):
    name: str
    supports_images: bool  # False: image embeddings are derived from the image's captions (text-only)

    def embed_texts(self, texts: list[str]) -> torch.Tensor: ...  # (N, D), unit norm

    def embed_images(self, images: list[Image.Image]) -> torch.Tensor: ...  # (N, D), unit norm


def _unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.float(), dim=-1)


def clip_preprocess(images: list[Image.Image], size: int, mean=CLIP_MEAN, std=CLIP_STD) -> torch.Tensor:
    """CLIP eval transform without torchvision: bicubic resize of the shorter side, centre crop, normalise."""
    out = []
    for im in images:
        im = im.convert("RGB")
        scale = size / min(im.size)
        w, h = max(size, round(im.width * scale)), max(size, round(im.height * scale))
        im = im.resize((w, h), Image.Resampling.BICUBIC)
        left, top = (w - size) // 2, (h - size) // 2
        im = im.crop((left, top, left + size, top + size))
        out.append(torch.from_numpy(np.asarray(im, dtype=np.float32) / 255.0).permute(2, 0, 1))  # (3, S, S)
    pixels = torch.stack(out)  # (B, 3, S, S)
    return (pixels - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def _require_dir(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{what} folder {path} has no config.json; pass a local folder saved with "
                                f"save_pretrained (dptune never downloads models)")
    return path


class HFClipEmbedder:
    """A ``transformers.CLIPModel`` + ``CLIPTokenizer`` saved in one local folder."""

    supports_images = True

    def __init__(self, folder: str | Path, device: str = "cpu") -> None:
        from transformers import CLIPModel, CLIPTokenizer

        folder = _require_dir(folder, "CLIP model")
        self.name = f"hf_clip:{folder}"
        self.device = device
        self.model = CLIPModel.from_pretrained(folder, local_files_only=True).to(device).eval()
        self.tokenizer = CLIPTokenizer.from_pretrained(folder, local_files_only=True)
        self.max_length = int(self.model.config.text_config.max_position_embeddings)
        self.image_size = int(self.model.config.vision_config.image_size)
        self.mean, self.std = CLIP_MEAN, CLIP_STD
        proc = folder / "preprocessor_config.json"
        if proc.is_file():  # respect the checkpoint's own normalisation when it ships one
            cfg = json.loads(proc.read_text(encoding="utf-8"))
            self.mean, self.std = tuple(cfg.get("image_mean", CLIP_MEAN)), tuple(cfg.get("image_std", CLIP_STD))

    @torch.no_grad()
    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        tok = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        out = self.model.text_model(input_ids=tok.input_ids.to(self.device),
                                    attention_mask=tok.attention_mask.to(self.device))
        return _unit(self.model.text_projection(out.pooler_output)).cpu()  # (N, D)

    @torch.no_grad()
    def embed_images(self, images: list[Image.Image]) -> torch.Tensor:
        pixels = clip_preprocess(images, self.image_size, self.mean, self.std).to(self.device)  # (B, 3, S, S)
        out = self.model.vision_model(pixel_values=pixels)
        return _unit(self.model.visual_projection(out.pooler_output)).cpu()  # (N, D)


class OpenClipEmbedder:
    """OpenCLIP model (paper: ViT-H-14) from a local checkpoint file or ``local-dir:`` folder."""

    supports_images = True

    def __init__(self, model_name: str, checkpoint: str | Path, device: str = "cpu") -> None:
        try:
            import open_clip
        except ImportError as e:
            raise ImportError(
                "the open_clip embedder needs the open_clip_torch package (and torchvision), which is not "
                "installed; `pip install open_clip_torch`, or use --embedder hf_clip with a local "
                "transformers CLIP folder, or --embedder sd_text (text-only, weaker)"
            ) from e
        if not str(checkpoint).startswith("local-dir:") and not Path(checkpoint).is_file():
            raise FileNotFoundError(f"OpenCLIP checkpoint {checkpoint} does not exist; pass the local "
                                    f"open_clip_pytorch_model.bin (dptune never downloads models)")
        self.name = f"open_clip:{model_name}:{checkpoint}"
        self.device = device
        model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=str(checkpoint))
        self.model, self.preprocess = model.to(device).eval(), preprocess
        self.tokenizer = open_clip.get_tokenizer(model_name)

    @torch.no_grad()
    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        return _unit(self.model.encode_text(self.tokenizer(texts).to(self.device))).cpu()  # (N, D)

    @torch.no_grad()
    def embed_images(self, images: list[Image.Image]) -> torch.Tensor:
        pixels = torch.stack([self.preprocess(im.convert("RGB")) for im in images]).to(self.device)
        return _unit(self.model.encode_image(pixels)).cpu()  # (N, D)


class SDTextEmbedder:
    """Stable Diffusion's own text encoder (pooled output); text only — see the module docstring."""

    supports_images = False

    def __init__(self, sd_dir: str | Path, device: str = "cpu") -> None:
        from transformers import CLIPTextModel, CLIPTokenizer

        sd_dir = Path(sd_dir)
        _require_dir(sd_dir / "text_encoder", "SD text_encoder")
        self.name = f"sd_text:{sd_dir}"
        self.device = device
        self.model = CLIPTextModel.from_pretrained(sd_dir / "text_encoder", local_files_only=True).to(device).eval()
        self.tokenizer = CLIPTokenizer.from_pretrained(sd_dir / "tokenizer", local_files_only=True)
        self.max_length = int(self.model.config.max_position_embeddings)

    @torch.no_grad()
    def embed_texts(self, texts: list[str]) -> torch.Tensor:
        tok = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        out = self.model(input_ids=tok.input_ids.to(self.device), attention_mask=tok.attention_mask.to(self.device))
        return _unit(out.pooler_output).cpu()  # (N, D)

    def embed_images(self, images: list[Image.Image]) -> torch.Tensor:
        raise NotImplementedError("sd_text embeds text only; mining derives image embeddings from captions")


def load_embedder(kind: str, path: str | Path, model_name: str = "ViT-H-14", device: str = "cpu") -> Embedder:
    """Build an embedder of ``kind`` (one of :data:`EMBEDDER_KINDS`) from a local ``path``."""
    if kind == "open_clip":
        return OpenClipEmbedder(model_name, path, device)
    if kind == "hf_clip":
        return HFClipEmbedder(path, device)
    if kind == "sd_text":
        return SDTextEmbedder(path, device)
    raise ValueError(f"unknown embedder {kind!r}; choose one of {list(EMBEDDER_KINDS)}")
