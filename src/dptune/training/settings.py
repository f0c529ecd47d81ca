"""``TrainerSettings``: the shared trainer's options, the base of every trained method's config.

A method's training config subclasses it and adds what the method itself needs (DPT: ``TrainConfig``); the
trainer reads only these fields. Defaults are DPT's paper values (B.3.1) where a method does not override them.
"""

from __future__ import annotations

from dataclasses import dataclass

from dptune.utils.config import field


@dataclass
class TrainerSettings:
    out_dir: str = field("runs/probe", help="where checkpoints, metrics.jsonl and TensorBoard logs go")
    steps: int = field(60_000, help="optimiser steps (DPT paper: 60k stage 1, 6k stage 2)")
    batch_size: int = field(8, help="samples per process per micro-batch")
    grad_accum: int = field(1, help="micro-batches per optimiser step")
    lr: float = field(1e-4, help="learning rate")
    lr_schedule: str = field("constant", help="'constant' or 'cosine' (with warm-up)")
    warmup_steps: int = field(0, help="linear warm-up steps")
    weight_decay: float = field(0.01, help="AdamW weight decay (not applied to biases, norms, temperatures)")
    betas: list[float] = field([0.9, 0.999], help="AdamW betas")
    grad_clip: float = field(0.1, help="max gradient norm (DPT paper B.3.1: 0.1; official code 1.0)")
    seed: int = field(0, help="seed: data order, noise, timesteps, dropout (resume-exact)")
    mixed_precision: str = field("no", help="'no', 'fp16' or 'bf16' (frozen model in half precision)")
    max_minutes: float | None = field(None, help="stop (with a checkpoint) after this much wall time")
    num_workers: int = field(0, help="DataLoader worker processes")
    validate_every: int = field(500, help="steps between validations")
    checkpoint_every: int = field(1000, help="steps between checkpoints (one is always written at the end)")
    keep_checkpoints: int = field(2, help="how many step checkpoints to keep (best/ and final/ are kept apart)")
    log_every: int = field(10, help="steps between metrics.jsonl / TensorBoard entries")

    def __post_init__(self) -> None:
        checks = [
            (self.lr_schedule in ("constant", "cosine"), "lr_schedule must be 'constant' or 'cosine'"),
            (self.mixed_precision in ("no", "fp16", "bf16"), "mixed_precision must be 'no', 'fp16' or 'bf16'"),
            (min(self.steps, self.batch_size, self.grad_accum) > 0, "steps, batch_size, grad_accum must be > 0"),
            (self.lr > 0 and self.grad_clip > 0, "lr and grad_clip must be > 0"),
            (len(self.betas) == 2, "betas must be two numbers"),
            (min(self.checkpoint_every, self.validate_every, self.log_every) > 0, "intervals must be > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"{type(self).__name__}: {message}")


@dataclass
class DataSettings(TrainerSettings):
    """The trainer's settings plus the model to train and the world whose data it trains on (through
    :mod:`dptune.plugins`): the base of every method's config that trains on a model and a world."""

    model: str = field("shapesworld", help="diffusers folder, hub id, or 'shapesworld' (shipped tiny SD)")
    # data
    data: str = field("shapesworld", help="training data: 'shapesworld' or 'coco' (COCO captions + RefCOCO/+/g)")
    data_size: int = field(20_000, help="ShapesWorld: number of distinct training samples")
    val_size: int = field(256, help="held-out samples for validation")
    coco_root: str | None = field(None, help="COCO: folder with annotations/ and train2014/")
    refcoco_root: str | None = field(None, help="COCO: RefCOCO/+/g index file (`dptune data "
                                    "convert-refer`) or a folder of MDETR finetune_*.json files")
    negatives: str | None = field(None, help="COCO: hard-negative index from `dptune data mine-negatives`")
    latent_cache: str | None = field(None, help="COCO: latent cache from `dptune data cache-latents`")
    image_size: int | None = field(None, help="training image size; default: the model's native size")
