"""Training data: dataset registry and a resume-exact batch sampler.

The sampler derives every batch from (seed, epoch) permutations, so step k's batch is the same whether the
run started at 0 or resumed at k -- and each process of a multi-process run takes its own slice.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Sampler

from dptune.data import collate_samples
from dptune.training.config import TrainConfig


class StepBatchSampler(Sampler[list[int]]):
    """Yields index lists for micro-batches ``start * accum`` onwards, forever (the loop counts steps)."""

    def __init__(self, size: int, batch_size: int, seed: int, start_micro: int = 0, rank: int = 0,
                 world: int = 1):
        if size < batch_size * world:
            raise ValueError(f"dataset of {size} samples is smaller than one global batch ({batch_size * world})")
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.start_micro, self.rank, self.world = start_micro, rank, world

    def batch(self, micro: int) -> list[int]:
        per_epoch = self.size // (self.batch_size * self.world)  # drop the ragged end of each epoch
        epoch, pos = divmod(micro, per_epoch)
        perm = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed * 100_003 + epoch))
        start = (pos * self.world + self.rank) * self.batch_size
        return perm[start : start + self.batch_size].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        micro = self.start_micro
        while True:
            yield self.batch(micro)
            micro += 1


def build_datasets(cfg: TrainConfig, image_size: int):
    """(train, validation) datasets for ``cfg.data``."""
    if cfg.data == "shapesworld":
        from dptune.shapesworld import ShapesWorldDataset

        # validation: held-out seeds of the same (in-distribution) compositions
        return (ShapesWorldDataset("train", size=cfg.data_size, seed=cfg.seed),
                ShapesWorldDataset("id", size=cfg.val_size, seed=10_000 + cfg.seed))
    if cfg.data == "coco":
        from dptune.data.training_sets import build_coco_datasets

        return build_coco_datasets(cfg, image_size)
    raise ValueError(f"unknown data {cfg.data!r}; choose 'shapesworld' or 'coco'")


def train_loader(dataset, cfg: TrainConfig, start_micro: int, rank: int, world: int) -> DataLoader:
    sampler = StepBatchSampler(len(dataset), cfg.batch_size, cfg.seed, start_micro, rank, world)
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_samples, num_workers=cfg.num_workers)


def fixed_batches(dataset, batch_size: int) -> list[dict]:
    """The whole (small) validation set as a fixed list of collated batches."""
    idx = list(range(len(dataset)))
    return [collate_samples([dataset[i] for i in idx[s : s + batch_size]]) for s in range(0, len(idx), batch_size)]
