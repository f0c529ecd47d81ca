"""The shipped ShapesWorld dual encoder as a :class:`~dptune.methods.referee.referees.Referee`."""

from __future__ import annotations

import torch

from dptune.methods.referee.interface import Referee
from dptune.methods.referee.shapes_model import ALIAS, ShapesReferee, load_shapes_referee


class ShapesWorldReferee(Referee):
    """log-odds of match = scale * cos(image, caption) + bias (trained with a sigmoid loss)."""

    name = "shapesworld"
    log_odds = True

    def __init__(self, model: ShapesReferee):
        self.model = model
        self._cache: dict[tuple[str, ...], torch.Tensor] = {}

    @classmethod
    def load(cls, source: str = ALIAS, device: str = "cpu") -> ShapesWorldReferee:
        return cls(load_shapes_referee(source or ALIAS, device))

    def _score(self, images: torch.Tensor, texts: list[str]) -> torch.Tensor:
        key = tuple(texts)
        if key not in self._cache:  # the inversion scores the same prompts every iteration
            self._cache = {key: self.model.embed_text(self.model.tokenize(texts)).detach()}
        txt = self._cache[key]  # (B, E)
        img = self.model.embed_image(images.to(txt.device, torch.float32))  # (B, E)
        return self.model.log_scale.clamp(max=4.6).exp() * (img * txt).sum(-1) + self.model.bias  # (B,)
