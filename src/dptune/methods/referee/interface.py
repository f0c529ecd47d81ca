"""The referee interface and the weighted ensemble (spec parsing and loading: :mod:`.referees`).

``score(images (B, 3, H, W) in [0, 1], texts: list[str] of length B) -> logits (B,)`` (higher = match),
differentiable with respect to the images. ``loss(images, texts) -> (B,)``: ``-log sigmoid(logit)`` for
referees whose logit is a log-odds of match (``log_odds``), else ``-logit``. Ensemble: weights normalised to
sum to 1; ``score = sum_r w_r score_r`` and ``loss = sum_r w_r loss_r``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


class Referee:
    """Base class: subclasses set ``name``, ``log_odds`` and implement :meth:`_score`."""

    name = "referee"
    log_odds = False

    def score(self, images: torch.Tensor, texts: list[str]) -> torch.Tensor:
        check_pair(images, texts)
        return self._score(images, list(texts))

    def loss(self, images: torch.Tensor, texts: list[str]) -> torch.Tensor:
        logits = self.score(images, texts).float()  # (B,)
        return F.softplus(-logits) if self.log_odds else -logits

    def _score(self, images: torch.Tensor, texts: list[str]) -> torch.Tensor:
        raise NotImplementedError


def check_pair(images: torch.Tensor, texts: list[str]) -> None:
    """One clear error for inputs the referees cannot pair up."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"referee: images must be a (B, 3, H, W) tensor in [0, 1]; got {shape}")
    if isinstance(texts, str) or len(texts) != images.shape[0]:
        n = "a single string" if isinstance(texts, str) else f"{len(texts)} texts"
        raise ValueError(f"referee: {images.shape[0]} images but {n}; pass one text per image (a list of B "
                         "strings; repeat a prompt to score several images against it)")


class Ensemble(Referee):
    """Weighted ensemble (weights normalised to sum to 1; see the module docstring)."""

    name = "ensemble"

    def __init__(self, members: list[Referee], weights: list[float]):
        if not members or len(members) != len(weights):
            raise ValueError(f"ensemble needs one weight per referee; got {len(members)} referees, "
                             f"{len(weights)} weights")
        if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"ensemble weights must be >= 0 with a positive sum; got {weights}")
        total = float(sum(weights))
        self.members, self.weights = list(members), [w / total for w in weights]
        self.log_odds = all(m.log_odds for m in members)
        self.name = "+".join(f"{m.name}*{w:.3g}" for m, w in zip(members, self.weights, strict=True))

    def score(self, images: torch.Tensor, texts: list[str]) -> torch.Tensor:
        check_pair(images, texts)
        return sum(w * m.score(images, texts).float() for m, w in zip(self.members, self.weights, strict=True))

    def loss(self, images: torch.Tensor, texts: list[str]) -> torch.Tensor:
        check_pair(images, texts)
        return sum(w * m.loss(images, texts) for m, w in zip(self.members, self.weights, strict=True))
