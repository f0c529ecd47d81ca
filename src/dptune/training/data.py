"""Training data: the world's datasets (from the registry) and a resume-exact batch sampler.

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
    """(train, validation) datasets of the world ``cfg.data`` (see :mod:`dptune.plugins`)."""
    from dptune.plugins import get_world, worlds

    try:
        world = get_world(cfg.data)
    except ValueError:
        raise ValueError(f"unknown data {cfg.data!r}; choose a registered world: {sorted(worlds())}") from None
    if world.train_datasets is None:
        trainable = sorted(n for n, w in worlds().items() if w.train_datasets is not None)
        raise ValueError(f"world {cfg.data!r} provides no training data; train on one of {trainable}")
    return world.train_datasets(cfg, image_size)


def train_loader(dataset, cfg: TrainConfig, start_micro: int, rank: int, world: int) -> DataLoader:
    sampler = StepBatchSampler(len(dataset), cfg.batch_size, cfg.seed, start_micro, rank, world)
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_samples, num_workers=cfg.num_workers)


def fixed_batches(dataset, batch_size: int) -> list[dict]:
    """The whole (small) validation set as a fixed list of collated batches."""
    idx = list(range(len(dataset)))
    return [collate_samples([dataset[i] for i in idx[s : s + batch_size]]) for s in range(0, len(idx), batch_size)]
