"""Train the ShapesWorld referee on the shared trainer: ``dptune train referee --out-dir runs/referee``.

Data: the training renders the shipped SD was trained on (``pairs.training_scene``, ID compositions only),
rendered once into a pool, each with a minimally edited hard-negative caption (colour, shape, count, swap or
flip; ID-only edits) drawn per item. Each step scores every image of the batch (B) against every caption and
hard negative of the batch (2B) with a sigmoid loss (SigLIP, Zhai et al. 2023) made of three equally
weighted means: matching pairs (same caption text), each image against its own minimal edit (the hard
negatives NegCLIP adds) and all other pairs. Validation: held-out ``ShapesWorldDataset('id')`` items.
Training images pass through the inversion's augmentations (without erasing, which can delete a counted
object) so the referee judges augmented views as it will during inversion.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dptune.methods.referee.augment import ViewConfig, build_views
from dptune.methods.referee.shapes_model import (
    ShapesReferee,
    ShapesRefereeConfig,
    load_shapes_referee,
    save_referee,
)
from dptune.training.settings import TrainerSettings
from dptune.utils.config import field


@dataclass
class RefereeTrainConfig(TrainerSettings):
    """Options of :func:`train_referee` (trainer settings + the referee's own)."""

    out_dir: str = field("runs/referee", help="run folder; the referee is exported to <out_dir>/final/referee")
    steps: int = field(2000, help="optimiser steps")
    batch_size: int = field(64, help="items per step (2B images x 2B captions are scored)")
    lr: float = field(1e-3, help="AdamW learning rate")
    lr_schedule: str = field("cosine", help="'constant' or 'cosine' (with warm-up)")
    warmup_steps: int = field(100, help="linear warm-up steps")
    grad_clip: float = field(1.0, help="max gradient norm")
    validate_every: int = field(250, help="steps between held-out ITM validations")
    checkpoint_every: int = field(500, help="steps between checkpoints")
    log_every: int = field(50, help="steps between log entries")
    embed_dim: int = field(64, help="joint embedding width")
    data_size: int = field(20_000, help="training renders (pre-rendered once; ID compositions only)")
    val_size: int = field(256, help="held-out ID items for validation and the model card")
    augment: bool = field(True, help="train on augmented views (affine, perspective, jitter)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if min(self.embed_dim, self.data_size, self.val_size) < 1:
            raise ValueError("embed_dim, data_size and val_size must be >= 1")


class RefereeObjective(nn.Module):
    """inputs -> (loss, {pos, hard, easy, total})."""

    def __init__(self, model: ShapesReferee):
        super().__init__()
        self.model = model

    def forward(self, inputs: dict):
        img = self.model.embed_image(inputs["images"])  # (M, E)
        txt = self.model.embed_text(inputs["ids"])  # (2B, E)
        logits = self.model.logit_matrix(img, txt)  # (M, 2B): image i x caption j
        pos, hard = inputs["pos"], inputs["hard"]  # (M, 2B) bool masks
        easy = ~(pos | hard)
        terms = {"pos": F.softplus(-logits[pos]).mean(), "hard": F.softplus(logits[hard]).mean(),
                 "easy": F.softplus(logits[easy]).mean()}
        total = terms["pos"] + terms["hard"] + terms["easy"]
        return total, {**{k: v.detach() for k, v in terms.items()}, "total": total.detach()}


class PairPool:
    """Pre-rendered training items as :class:`~dptune.data.DPTSample` (unused fields empty), because
    rendering the full septuple on the fly costs more than the referee's training step."""

    def __init__(self, size: int, seed: int) -> None:
        import numpy as np

        from dptune.shapesworld.grammar import caption
        from dptune.shapesworld.negatives import sample_hard_negative
        from dptune.shapesworld.pairs import training_scene
        from dptune.shapesworld.render import render_scene

        rng = np.random.default_rng([seed, 29])
        specs = [training_scene(i, seed) for i in range(size)]
        self.images = torch.from_numpy(np.stack([render_scene(sc) for _, sc in specs]))  # (N, S, S, 3) uint8
        self.captions = [caption(spec) for spec, _ in specs]
        self.negatives = [caption(sample_hard_negative(spec, rng, id_only=True)[1]) for spec, _ in specs]

    def __len__(self) -> int:
        return len(self.captions)

    def __getitem__(self, i: int):
        from dptune.data import DPTSample

        empty = torch.zeros(0)
        image = self.images[i].permute(2, 0, 1).float().div(127.5).sub(1.0)  # (3, S, S) in [-1, 1]
        return DPTSample(image=image, caption=self.captions[i], hn_caption=self.negatives[i], rand_caption="",
                         hn_image=empty, rand_image=empty, ref_image=empty, ref_expression="", ref_box=empty)


def batch_inputs(model: ShapesReferee, batch: dict, views: nn.Module | None, device) -> dict:
    """A collated ShapesWorld batch -> the objective's inputs (images in [0, 1], ids, pair masks)."""
    with_hn = batch["hn_image"].numel() > 0  # ShapesWorldDataset items carry the hard negative's render
    images = torch.cat([batch["image"], batch["hn_image"]]) if with_hn else batch["image"]
    images = images.add(1).div(2).to(device)  # (M, 3, H, W), M = 2B or B
    if views is not None:
        images = views(images).clamp(0, 1)
    captions = list(batch["caption"]) + list(batch["hn_caption"])  # caption j describes image j (j < M)
    b, m = len(batch["caption"]), images.shape[0]
    same = torch.tensor([[a == c for c in captions] for a in captions[:m]], device=device)  # (M, 2B)
    own_edit = torch.zeros_like(same)
    idx = torch.arange(b, device=device)
    own_edit[idx, idx + b] = True
    if with_hn:
        own_edit[idx + b, idx] = True
    return {"images": images, "ids": model.tokenize(captions).to(device), "pos": same, "hard": own_edit & ~same}


@torch.no_grad()
def itm_accuracy(model: ShapesReferee, batches: list[dict]) -> dict[str, float]:
    """Held-out ITM: an item is right when logit(image, caption) > 0 > logit(image, hard negative);
    ``rank`` = the caption outscores its hard negative."""
    was_training = model.training
    model.eval()
    binary, rank = [], []
    for batch in batches:
        images = batch["image"].add(1).div(2).to(model.bias.device)
        pos = model(images, model.tokenize(batch["caption"]))  # (B,)
        neg = model(images, model.tokenize(batch["hn_caption"]))  # (B,)
        binary += ((pos > 0) & (neg < 0)).tolist()
        rank += (pos > neg).tolist()
    model.train(was_training)
    n = max(1, len(binary))
    return {"itm_accuracy": sum(binary) / n, "rank_accuracy": sum(rank) / n, "select": sum(binary) / n}


@torch.no_grad()
def held_out_report(model: ShapesReferee, n: int = 512, seed: int = 7) -> dict:
    """ITM accuracy on new ID and OOD items, overall and per hard-negative edit (for the model card)."""
    from dptune.shapesworld.dataset import ShapesWorldDataset
    from dptune.shapesworld.grammar import caption
    from dptune.shapesworld.render import render_scene

    model.eval()
    report = {}
    for split in ("id", "ood"):
        ds = ShapesWorldDataset(split, n, seed)
        recs = [ds.record(i) for i in range(n)]
        images = torch.stack([torch.from_numpy(render_scene(r.scene)).permute(2, 0, 1).float() / 255 for r in recs])
        pos = model(images, model.tokenize([caption(r.spec) for r in recs]))  # (N,)
        neg = model(images, model.tokenize([caption(r.hn_spec) for r in recs]))  # (N,)
        ok, rank = ((pos > 0) & (neg < 0)).tolist(), (pos > neg).tolist()
        per_edit: dict[str, list] = {}
        for r, a, b in zip(recs, ok, rank, strict=True):
            per_edit.setdefault(r.hn_edit, []).append((a, b))
        report[split] = {"items": n, "itm_accuracy": round(sum(ok) / n, 4), "rank_accuracy": round(sum(rank) / n, 4),
                         "per_edit": {e: {"n": len(v), "itm": round(sum(a for a, _ in v) / len(v), 4),
                                          "rank": round(sum(b for _, b in v) / len(v), 4)}
                                      for e, v in sorted(per_edit.items())}}
    return report


def train_referee(cfg: RefereeTrainConfig, progress: bool = True):
    """Train on the shared trainer; the referee lands in ``<out_dir>/final/referee`` (and ``best/referee``),
    with ``held_out.json`` (:func:`held_out_report`) beside it."""
    from dptune.shapesworld.dataset import ShapesWorldDataset
    from dptune.training.loop import Trainer, make_accelerator
    from dptune.training.task import TrainingTask

    Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
    acc = make_accelerator(cfg)
    torch.manual_seed(cfg.seed)
    model = ShapesReferee(ShapesRefereeConfig(embed_dim=cfg.embed_dim)).to(acc.device)
    views = build_views(ViewConfig(), erasing=False) if cfg.augment else None
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    task = TrainingTask(
        objective=RefereeObjective(model),
        param_groups=[{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        prepare=lambda batch, gen: batch_inputs(model, batch, views, acc.device),
        export=lambda directory: save_referee(model, Path(directory) / "referee"),
        datasets=(PairPool(cfg.data_size, cfg.seed),
                  ShapesWorldDataset("id", cfg.val_size, cfg.seed + 1)),
        validate=lambda batches: itm_accuracy(model, batches),
    )
    result = Trainer(cfg, task, acc, progress=progress).fit(resume=True)
    if acc.is_main_process:
        from dptune.utils.io import save_json

        final = Path(cfg.out_dir) / "final" / "referee"
        save_json(final / "held_out.json", held_out_report(load_shapes_referee(final), n=cfg.val_size))
    return result
