"""The evaluation material a world hands to the evaluator: ITM / REC items and prompt sets.

These plain records live below both the evaluation package and the worlds, so a world can build them
without importing :mod:`dptune.evaluation` (which resolves worlds through :mod:`dptune.plugins`).

* :class:`ITMItem` -- one image-text matching question with 1 positive and K-1 (= 3) hard negatives:
  ``i2t``: one image, K captions;  ``t2i``: one caption, K images.  The positive is ``candidates[label]``.
* :class:`RECItem` -- an image, a referring expression and its gold box (normalised cxcywh); optionally the
  boxes of every object in the image (to state the 1/#objects chance level).
* :class:`PromptRecord` / :class:`PromptSet` -- prompts for generative evaluation, with a category each.

Images are either tensors (3, H, W) in [-1, 1] or file paths, loaded and square-resized by the evaluator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

ITM_DIRECTIONS = ("i2t", "t2i")
ImageRef = torch.Tensor | str  # (3, H, W) in [-1, 1], or an image file path


@dataclass
class ITMItem:
    """One ITM question. i2t: ``images`` has 1 entry and ``texts`` K; t2i: ``texts`` 1 and ``images`` K."""

    direction: str
    images: list[ImageRef]
    texts: list[str]
    label: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.direction not in ITM_DIRECTIONS:
            raise ValueError(f"ITMItem direction must be one of {ITM_DIRECTIONS}, got {self.direction!r}")
        one, many = (self.images, self.texts) if self.direction == "i2t" else (self.texts, self.images)
        if len(one) != 1 or len(many) < 2:
            raise ValueError(
                f"{self.direction} item needs 1 query and >= 2 candidates, got {len(one)} and "
                f"{len(many)}; i2t = one image + K captions, t2i = one caption + K images"
            )
        if not 0 <= self.label < len(many):
            raise ValueError(f"label {self.label} is not a candidate index (0..{len(many) - 1})")

    @property
    def num_candidates(self) -> int:
        return max(len(self.images), len(self.texts))


@dataclass
class RECItem:
    """One referring expression: ``box`` is the gold (cx, cy, w, h) normalised to [0, 1]."""

    image: ImageRef
    expression: str
    box: tuple[float, float, float, float]
    object_boxes: list[tuple[float, float, float, float]] | None = None  # every object (chance = 1/count)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        b = tuple(float(v) for v in self.box)
        if len(b) != 4 or not all(0.0 <= v <= 1.0 for v in b) or b[2] <= 0 or b[3] <= 0:
            raise ValueError(
                f"REC box must be normalised (cx, cy, w, h) in [0, 1] with w, h > 0, got {self.box}"
            )
        self.box = b


@dataclass(frozen=True)
class PromptRecord:
    """One evaluation prompt: text, category (for per-category scores) and format-specific metadata."""

    text: str
    category: str = "all"
    meta: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass
class PromptSet:
    name: str
    prompts: list[PromptRecord]
    source: str  # file path or generator description, recorded in results.json
    kind: str  # the file format, or the name of the world that made the set (decides the default scorers)
