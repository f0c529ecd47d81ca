"""The one sample contract every DPT data source satisfies (paper Appendix B.1, the "septuple").

A sample carries what one training step of stage 1/2 needs:

* ITM (paper Eqs. 3-4): a positive image with its caption, a hard-negative caption (minimal edit of the
  caption), a random caption, a hard-negative image (matches a minimally edited caption, similar layout) and
  a random image.
* REC (paper Eqs. 5-7): an image (for COCO/RefCOCO a different picture than the ITM one; for ShapesWorld
  it may be the same), a referring expression and its gold box.

Images are float tensors in [-1, 1], shape (3, H, W), the range the Stable Diffusion VAE expects.
Boxes are normalised (cx, cy, w, h) in [0, 1] relative to ``ref_image``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Protocol, runtime_checkable

import torch


@dataclass
class DPTSample:
    image: torch.Tensor  # (3, H, W) in [-1, 1]
    caption: str
    hn_caption: str  # hard negative: minimally edited caption
    rand_caption: str  # random negative caption
    hn_image: torch.Tensor  # (3, H, W): render/photo of a minimally edited caption
    rand_image: torch.Tensor  # (3, H, W): random other image
    ref_image: torch.Tensor  # (3, H, W): image the referring expression points into
    ref_expression: str
    ref_box: torch.Tensor  # (4,) normalised cxcywh of the referred object


@runtime_checkable
class DPTDataset(Protocol):
    """Map-style dataset of :class:`DPTSample` (``torch.utils.data.Dataset`` compatible)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> DPTSample: ...


def collate_samples(samples: list[DPTSample]) -> dict[str, torch.Tensor | list[str]]:
    """Batch samples: tensors are stacked along a new dim 0, strings become lists."""
    if not samples:
        raise ValueError("collate_samples got an empty list of samples")
    batch: dict[str, torch.Tensor | list[str]] = {}
    names = list(samples[0]) if isinstance(samples[0], dict) else [f.name for f in fields(DPTSample)]
    for name in names:  # dict samples (other methods' datasets) collate the same way, key by key
        values = [s[name] if isinstance(s, dict) else getattr(s, name) for s in samples]
        batch[name] = torch.stack(values) if isinstance(values[0], torch.Tensor) else list(values)
    return batch
