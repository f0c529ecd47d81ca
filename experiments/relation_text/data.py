"""Training batches of the relation-text experiment: fresh ShapesWorld renders with their captions, the flip of
each relation caption, and (for the grounding term) each named object's mask and words."""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

import numpy as np
import torch

from dptune.shapesworld.dataset import to_tensor
from dptune.shapesworld.grammar import COLOURS, IMAGE_SIZE, OPPOSITE, SHAPES, Kind, PromptSpec, make_prompt
from dptune.shapesworld.render import render_scene, scene_for_spec
from dptune.shapesworld.splits import sample_spec, scene_is_id


def flip_caption(spec) -> str:
    """The relation caption with the opposite relation (the ``flip`` hard negative)."""
    return make_prompt(replace(spec, relation=OPPOSITE[spec.relation])).text


class Batch(NamedTuple):
    images: torch.Tensor  # (n, 3, 32, 32) fresh training-split renders
    captions: list[str]  # 10% of the non-relation ones empty (keeps the unconditional branch)
    flips: list[str | None]  # the flip caption of each relation sample
    two_object: list[PromptSpec | None]  # the spec of each (non-empty) binding / relation caption
    masks: torch.Tensor  # (n, 2, 32, 32) where each named object lies (kinds[0], kinds[1]; zeros if absent)
    tokens: torch.Tensor  # (n, 2, L) bool: the colour and shape words naming each object


def object_masks_and_tokens(spec, scene, text: str, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(2, 32, 32) masks and (2, length) token flags of the kinds a caption names (word i is token i + 1:
    the ShapesWorld tokenizer is word-level after the start token)."""
    masks, tokens = torch.zeros(2, IMAGE_SIZE, IMAGE_SIZE), torch.zeros(2, length, dtype=torch.bool)
    words = text.split()
    for k, kind in enumerate(spec.kinds if text else ()):
        for o in scene.objects:
            if o.kind == kind:
                x0, y0, x1, y1 = o.box
                masks[k, y0:y1, x0:x1] = 1.0
        i = next(i for i in range(len(words) - 1)
                 if words[i] == kind.colour and words[i + 1].rstrip("s") == kind.shape)
        tokens[k, i + 1:i + 3] = True
    return masks, tokens


def training_batch(rng: np.random.Generator, n: int, relation_share: float, length: int) -> Batch:
    images, captions, flips, two_object, masks, tokens = [], [], [], [], [], []
    for _ in range(n):
        rel = rng.random() < relation_share
        category = "relation" if rel else ("colour", "count", "binding")[int(rng.integers(3))]
        spec = sample_spec(rng, category, "train")
        scene = scene_for_spec(spec, rng, accept=scene_is_id)
        images.append(to_tensor(render_scene(scene)))
        text = make_prompt(spec).text
        captions.append("" if not rel and rng.random() < 0.1 else text)
        flips.append(flip_caption(spec) if rel else None)
        two = len(spec.kinds) == 2 and text == captions[-1]
        two_object.append(spec if two else None)
        m, tok = object_masks_and_tokens(spec, scene, captions[-1], length)
        masks.append(m)
        tokens.append(tok)
    return Batch(torch.stack(images), captions, flips, two_object, torch.stack(masks), torch.stack(tokens))


def presence_negative(spec: PromptSpec, k: int, mode: str, generator: torch.Generator) -> str:
    """The presence contrast's negative caption for object ``k`` of a two-object ``spec``."""
    if mode == "alone":
        return f"a {spec.kinds[k].phrase}"
    other = spec.kinds[1 - k]
    absent = [Kind(c, s) for c in COLOURS for s in SHAPES
              if c != other.colour and s != other.shape and Kind(c, s) != spec.kinds[k]]
    kind = absent[int(torch.randint(0, len(absent), (1,), generator=generator))]
    kinds = (kind, other) if k == 0 else (other, kind)
    return make_prompt(replace(spec, kinds=kinds)).text
