"""The ShapesWorld referee: a small dual encoder (tiny CLIP text encoder + position-keeping CNN) that dptune
trains (:mod:`dptune.methods.referee.shapes_train`) and ships in ``models/shapesworld-referee``.

Its logit is ``scale * cos(image, text) + bias``, trained with a sigmoid (SigLIP-style) loss against the
world's hard negatives, so ``sigmoid(logit)`` is p(match): the same -log p(match) ITM loss as BLIP-2 applies.

Folder format: ``config.json`` (``model_type`` = :data:`MODEL_TYPE`, the architecture and the vocabulary)
and ``model.safetensors`` (every weight). No pickles.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

MODEL_TYPE = "dptune-shapesworld-referee"
ALIAS = "shapesworld-referee"
WEIGHTS = "model.safetensors"


def shipped_referee() -> Path:
    """``models/shapesworld-referee`` of the repository (resolved relative to the package, like the SD)."""
    return Path(__file__).resolve().parents[4] / "models" / ALIAS


@dataclasses.dataclass
class ShapesRefereeConfig:
    """Architecture of the referee (written to config.json)."""

    embed_dim: int = 64  # joint embedding width
    image_size: int = 32  # ShapesWorld renders
    text_hidden: int = 64
    text_layers: int = 2
    text_heads: int = 4
    text_ffn: int = 128
    max_length: int = 16
    words: list[str] = dataclasses.field(default_factory=list)  # the tokenizer's vocabulary


class ShapesReferee(nn.Module):
    """(images in [0, 1], token ids) -> match logits; ``tokenize`` turns captions into ids."""

    def __init__(self, cfg: ShapesRefereeConfig):
        super().__init__()
        from dptune.backbone.tokenizers import build_clip_tokenizer
        from dptune.shapesworld import vocabulary
        from dptune.shapesworld.pretrain_text_model import build_image_encoder
        from dptune.shapesworld.tiny_sd import TinySDConfig, build_text_encoder

        cfg.words = list(cfg.words or vocabulary())
        self.config = cfg
        self.tokenizer = build_clip_tokenizer(cfg.words, max_length=cfg.max_length)
        arch = TinySDConfig(image_size=cfg.image_size, text_hidden=cfg.text_hidden, text_layers=cfg.text_layers,
                            text_heads=cfg.text_heads, text_ffn=cfg.text_ffn, max_length=cfg.max_length)
        self.text_encoder = build_text_encoder(arch, self.tokenizer)
        self.text_proj = nn.Linear(cfg.text_hidden, cfg.embed_dim, bias=False)
        self.image_encoder = build_image_encoder(cfg.embed_dim, cfg.image_size)
        self.log_scale = nn.Parameter(torch.tensor(2.3))  # exp(2.3) = 10 (SigLIP init)
        self.bias = nn.Parameter(torch.tensor(-5.0))  # most pairs are negatives: start at low p(match)

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        from dptune.shapesworld.train_base_phases import tokenize_captions

        try:
            return tokenize_captions(self.tokenizer, list(texts), self.config.max_length)  # (N, L)
        except ValueError as e:
            raise ValueError(f"the ShapesWorld referee only reads ShapesWorld captions: {e}") from None

    def embed_text(self, ids: torch.Tensor) -> torch.Tensor:
        pooled = self.text_encoder(ids.to(self.bias.device)).pooler_output  # (N, D) at EOS
        return F.normalize(self.text_proj(pooled), dim=-1)  # (N, E)

    def embed_image(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, E); other sizes are resized to the training size."""
        size = self.config.image_size
        if images.shape[-2:] != (size, size):
            images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return F.normalize(self.image_encoder(images * 2 - 1), dim=-1)  # CNN trained on [-1, 1]

    def logit_matrix(self, img: torch.Tensor, txt: torch.Tensor) -> torch.Tensor:
        """(B, E), (N, E) -> (B, N) log-odds of match."""
        return self.log_scale.clamp(max=4.6).exp() * img @ txt.T + self.bias

    def forward(self, images: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """Paired images (B, 3, H, W) and ids (B, L) -> (B,) log-odds."""
        img, txt = self.embed_image(images), self.embed_text(ids)
        return self.log_scale.clamp(max=4.6).exp() * (img * txt).sum(-1) + self.bias


def save_referee(model: ShapesReferee, directory: str | os.PathLike) -> Path:
    from safetensors.torch import save_file

    from dptune.utils.io import save_json

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / WEIGHTS))
    save_json(out / "config.json", {"model_type": MODEL_TYPE, **dataclasses.asdict(model.config)})
    return out


def is_referee_folder(path: Path) -> bool:
    from dptune.utils.io import load_json

    config = path / "config.json"
    return config.is_file() and load_json(config).get("model_type") == MODEL_TYPE


def load_shapes_referee(directory: str | os.PathLike = ALIAS, device: str | torch.device = "cpu") -> ShapesReferee:
    """The shipped referee (``'shapesworld-referee'``) or a trained folder, frozen and in eval mode."""
    from safetensors.torch import load_file

    from dptune.utils.io import load_json

    path = shipped_referee() if str(directory) == ALIAS else Path(directory).expanduser()
    if not (path / WEIGHTS).is_file() or not is_referee_folder(path):
        raise FileNotFoundError(
            f"{path} is not a ShapesWorld referee folder (config.json with model_type {MODEL_TYPE!r} and "
            f"{WEIGHTS}); re-clone the repository or train one with `dptune train referee --out-dir DIR`")
    raw = load_json(path / "config.json")
    names = {f.name for f in dataclasses.fields(ShapesRefereeConfig)}
    model = ShapesReferee(ShapesRefereeConfig(**{k: v for k, v in raw.items() if k in names}))
    model.load_state_dict(load_file(str(path / WEIGHTS)))
    return model.to(device).requires_grad_(False).eval()
