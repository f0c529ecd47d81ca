"""Registers the COCO world with :mod:`dptune.plugins` (entry point ``dptune.worlds: coco``): COCO captions +
RefCOCO/+/g training data (``dptune probe --data coco``). Its evaluation files (HN-MSCOCO, RefCOCO) need
paths, so they are read by the evaluation's ``--itm-json`` / ``--rec-file`` options, not registered here."""

from __future__ import annotations

from dptune.plugins import World, register_world


def train_datasets(cfg, image_size: int):
    from dptune.data.training_sets import build_coco_datasets

    return build_coco_datasets(cfg, image_size)


def world() -> World:
    return World(
        name="coco",
        summary="COCO captions with mined hard negatives + RefCOCO/+/g referring expressions (paper B.1)",
        train_datasets=train_datasets,
    )


def register() -> None:
    register_world(world())
