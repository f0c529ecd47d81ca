"""ShapesWorld as a :class:`dptune.data.interface.DPTDataset` (torch-free trainer helpers: ``pairs.py``).

Sample ``i`` is a pure function of ``(split, seed, i)``: each index seeds its own numpy Generator, so
datasets can be sharded, shuffled or re-created without changing any sample. Categories cycle with the
index (``i % 4``), giving exactly equal shares.

Splits: ``train`` and ``id`` draw only in-distribution compositions (``id`` uses a different random stream,
i.e. new scenes); ``train``/``id`` captions, negatives and images never show a held-out composition.
``ood`` draws positives from held-out compositions (negatives unrestricted) for evaluation only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dptune.data.interface import DPTSample
from dptune.shapesworld.grammar import CATEGORIES, PromptSpec, Scene, caption
from dptune.shapesworld.negatives import hard_negative_scene, random_negative, sample_hard_negative
from dptune.shapesworld.refexp import RefExp, make_ref_scene
from dptune.shapesworld.render import render_scene, scene_for_spec
from dptune.shapesworld.splits import ALL_KINDS, SEEN_KINDS, SPLITS, check_split, sample_spec, scene_is_id
from dptune.utils.config import field


@dataclass(frozen=True)
class SampleRecord:
    """Structured content of one dataset sample (what :meth:`ShapesWorldDataset.__getitem__` renders)."""

    spec: PromptSpec
    scene: Scene
    hn_edit: str
    hn_spec: PromptSpec
    hn_scene: Scene
    rand_spec: PromptSpec
    rand_scene: Scene
    ref_scene: Scene
    ref: RefExp


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> float (3, H, W) in [-1, 1]."""
    return torch.from_numpy(img).permute(2, 0, 1).float().div(127.5).sub(1.0)  # (3, H, W)


def build_record(rng: np.random.Generator, category: str, split: str) -> SampleRecord:
    """Draw one septuple of ``category`` from ``split``."""
    in_dist = split != "ood"
    accept = scene_is_id if in_dist else None
    spec = sample_spec(rng, category, split)
    scene = scene_for_spec(spec, rng, accept)
    edit, hn_spec = sample_hard_negative(spec, rng, id_only=in_dist)
    hn_scene = hard_negative_scene(scene, hn_spec, edit, rng, accept)
    rand_spec, rand_scene = random_negative(spec, scene, rng, split, accept)
    ref_scene, ref = make_ref_scene(rng, SEEN_KINDS if in_dist else ALL_KINDS, accept)
    return SampleRecord(spec, scene, edit, hn_spec, hn_scene, rand_spec, rand_scene, ref_scene, ref)


@dataclass
class ShapesWorldConfig:
    """Options of a :class:`ShapesWorldDataset` (for ``--config`` files and saved run configs)."""

    split: str = field("train", help="train | id (new scenes of training compositions) | ood (held-out ones)")
    size: int = field(10_000, help="number of samples (index i is a pure function of seed and i)")
    seed: int = field(0, help="dataset seed; a different seed gives different scenes")

    def __post_init__(self) -> None:
        check_split(self.split)
        if not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"size must be a positive int, got {self.size!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")


class ShapesWorldDataset:
    """Map-style ShapesWorld dataset of :class:`DPTSample` (images (3, 32, 32) in [-1, 1])."""

    def __init__(self, split: str = "train", size: int = 10_000, seed: int = 0) -> None:
        self.config = ShapesWorldConfig(split, size, seed)  # validates
        self.split, self.size, self.seed = split, size, seed

    @classmethod
    def from_config(cls, cfg: ShapesWorldConfig) -> ShapesWorldDataset:
        return cls(cfg.split, cfg.size, cfg.seed)

    def __len__(self) -> int:
        return self.size

    def _index(self, index: int) -> int:
        if not -self.size <= index < self.size:
            raise IndexError(f"index {index} out of range for ShapesWorldDataset of size {self.size}")
        return index % self.size

    def record(self, index: int) -> SampleRecord:
        """The structured sample at ``index`` (specs, scenes, edit kind), before rendering."""
        i = self._index(index)
        rng = np.random.default_rng([self.seed, SPLITS.index(self.split), i])
        return build_record(rng, CATEGORIES[i % len(CATEGORIES)], self.split)

    def __getitem__(self, index: int) -> DPTSample:
        r = self.record(index)
        target = r.ref_scene.objects[r.ref.target]
        return DPTSample(
            image=to_tensor(render_scene(r.scene)),
            caption=caption(r.spec),
            hn_caption=caption(r.hn_spec),
            rand_caption=caption(r.rand_spec),
            hn_image=to_tensor(render_scene(r.hn_scene)),
            rand_image=to_tensor(render_scene(r.rand_scene)),
            ref_image=to_tensor(render_scene(r.ref_scene)),
            ref_expression=r.ref.text,
            ref_box=torch.tensor(target.box_cxcywh(), dtype=torch.float32),  # (4,) cxcywh in [0, 1]
        )


__all__ = ["SampleRecord", "ShapesWorldConfig", "ShapesWorldDataset", "build_record", "to_tensor"]
