"""CLIP and BLIP-2 referees through ``transformers`` (a local folder or a hub id already in the cache).

* :class:`CLIPReferee` -- ``CLIPModel``: logit = CLIP's ``logit_scale * cos(image, text)``; loss = -logit.
* :class:`Blip2Referee` -- ``Blip2ForImageTextRetrieval`` with its ITM head: logit = l_match - l_no_match, a
  log-odds, so the loss is the paper's ITM term -log p(match). Deviation: the paper adds the Q-Former's
  image-grounded captioning loss; ``Blip2ForImageTextRetrieval`` has no language-modelling head for the
  Q-Former, so that term is absent (docs/referee.md).

Both resize the views to the model's input size and normalise them with the folder's image-processor mean /
std (``preprocessor_config.json``; CLIP's values when it has none), all in torch so gradients reach the
image.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from dptune.methods.referee.interface import Referee

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # CLIP's (and BLIP-2's) image normalisation
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _from_pretrained(cls, source: str, what: str, **kw):
    """Load ``cls`` from a folder or a cached hub id; one clear error offline."""
    from dptune.backbone.loading import hub_offline

    local = Path(source).expanduser()
    try:
        if local.is_dir():
            return cls.from_pretrained(str(local), local_files_only=True, **kw)
        return cls.from_pretrained(source, local_files_only=hub_offline(), **kw)
    except OSError as e:
        where = "the local Hugging Face cache" if hub_offline() else "the Hugging Face hub"
        raise FileNotFoundError(
            f"{what} referee {source!r} could not be loaded from {where if not local.is_dir() else 'its folder'} "
            f"({str(e).splitlines()[0][:160]}); pass a local folder saved with save_pretrained, or download the "
            "hub id once with HF_HUB_OFFLINE=0") from None


def _normalisation(source: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    from dptune.utils.io import load_json

    cfg = Path(source).expanduser() / "preprocessor_config.json"
    if cfg.is_file():
        raw = load_json(cfg)
        return tuple(raw.get("image_mean", CLIP_MEAN)), tuple(raw.get("image_std", CLIP_STD))
    return CLIP_MEAN, CLIP_STD


class _Pixels:
    """[0, 1] images -> the model's normalised input at ``size`` (differentiable)."""

    def __init__(self, size: int, mean, std, device) -> None:
        self.size = size
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.mean.device, torch.float32)
        if images.shape[-2:] != (self.size, self.size):
            images = F.interpolate(images, size=(self.size, self.size), mode="bicubic", align_corners=False)
        return (images - self.mean) / self.std  # (B, 3, S, S)


def _pooled(out) -> torch.Tensor:
    """transformers 4 returns the projected features, 5 an output whose ``pooler_output`` holds them."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class CLIPReferee(Referee):
    name = "clip"
    log_odds = False

    def __init__(self, model, tokenizer, pixels: _Pixels) -> None:
        self.model, self.tokenizer, self.pixels = model, tokenizer, pixels
        self._text: dict[tuple[str, ...], torch.Tensor] = {}

    @classmethod
    def load(cls, source: str, device: str = "cpu") -> CLIPReferee:
        from transformers import AutoTokenizer, CLIPModel

        model = _from_pretrained(CLIPModel, source, "CLIP").to(device).requires_grad_(False).eval()
        tokenizer = _from_pretrained(AutoTokenizer, source, "CLIP tokenizer")
        mean, std = _normalisation(source)
        return cls(model, tokenizer, _Pixels(model.config.vision_config.image_size, mean, std, device))

    def _text_features(self, texts: list[str]) -> torch.Tensor:
        key = tuple(texts)
        if key not in self._text:
            enc = self.tokenizer(texts, padding=True, truncation=True, return_tensors="pt").to(self.pixels.mean.device)
            with torch.no_grad():
                feats = _pooled(self.model.get_text_features(input_ids=enc.input_ids,
                                                             attention_mask=enc.attention_mask))
            self._text = {key: F.normalize(feats.float(), dim=-1)}  # (B, E)
        return self._text[key]

    def _score(self, images: torch.Tensor, texts: list[str]) -> torch.Tensor:
        img = _pooled(self.model.get_image_features(pixel_values=self.pixels(images)))  # (B, E)
        img = F.normalize(img.float(), dim=-1)
        return self.model.logit_scale.exp().float() * (img * self._text_features(texts)).sum(-1)  # (B,)


class Blip2Referee(Referee):
    name = "blip2"
    log_odds = True

    def __init__(self, model, tokenizer, pixels: _Pixels, max_length: int = 32) -> None:
        self.model, self.tokenizer, self.pixels, self.max_length = model, tokenizer, pixels, max_length

    @classmethod
    def load(cls, source: str, device: str = "cpu") -> Blip2Referee:
        from transformers import AutoTokenizer, Blip2ForImageTextRetrieval

        model = _from_pretrained(Blip2ForImageTextRetrieval, source, "BLIP-2")
        model = model.to(device).requires_grad_(False).eval()
        tokenizer = _from_pretrained(AutoTokenizer, source, "BLIP-2 tokenizer")
        mean, std = _normalisation(source)
        return cls(model, tokenizer, _Pixels(model.config.vision_config.image_size, mean, std, device))

    def _score(self, images: torch.Tensor, texts: list[str]) -> torch.Tensor:
        enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                             return_tensors="pt").to(self.pixels.mean.device)
        out = self.model(pixel_values=self.pixels(images).to(self.model.dtype), input_ids=enc.input_ids,
                         attention_mask=enc.attention_mask, use_image_text_matching_head=True)
        logits = out.logits_per_image.float()  # (B, 2): [no match, match]
        return logits[:, 1] - logits[:, 0]  # log-odds of match
