"""HN-DiffusionITM fine-tuning on the shared trainer (``dptune train hn-diffusion-itm``).

A LoRA on the U-Net is trained so that the true caption denoises the image better than its hard negative:

    loss = MSE_pos - clamp(MSE_neg, max = neg_loss_factor * MSE_pos)      (batch means, bound detached)

with MSE_x = mean || eps_hat(z_t, t, x) - eps ||^2 on the same noisy latent z_t (one noise and t per image).
The clamp stops the negative term from growing without bound: once the hard negative is worse than the
positive, only the positive term (plain denoising) is trained. As the released script, the bound is the
positive loss's value (no gradient flows through it). Data: a world's training set -- its captions and their
hard-negative captions (ShapesWorld: ``hn_caption``). The LoRA is exported in diffusers' format to
``<out_dir>/final/lora``, so ``hn-diffusion-itm:lora=...`` (and ``dpt``'s loader) read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dptune.training.settings import DataSettings
from dptune.utils.config import field, to_dict


@dataclass
class HNTrainConfig(DataSettings):
    """HN fine-tuning options (the released script's values where they apply: lr 1e-4, clip 1.0)."""

    out_dir: str = field("runs/hn-diffusion-itm", help="run folder; the LoRA goes to <out_dir>/final/lora")
    steps: int = field(1000, help="optimiser steps")
    batch_size: int = field(8, help="images per step (each with its caption and its hard-negative caption)")
    lr: float = field(1e-4, help="AdamW learning rate (released script: 1e-4)")
    grad_clip: float = field(1.0, help="max gradient norm (released script: 1.0)")
    validate_every: int = field(10**9, help="no validation pass (evaluate with evaluate_itm)")
    checkpoint_every: int = field(500, help="steps between checkpoints")
    val_size: int = field(1, help="held-out samples (not used; the world requires one)")
    lora_rank: int = field(4, help="LoRA rank")
    lora_targets: str = field("cross", help="'cross' = cross-attention q/k/v/out; 'all' = self- and cross-attention")
    neg_loss_factor: float = field(1.0, help="the negative MSE is clamped at this times the positive MSE")
    t_min: int = field(0, help="smallest training timestep (inclusive)")
    t_max: int = field(1000, help="largest training timestep (exclusive); uniform per image")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lora_rank < 1 or not 0 <= self.t_min < self.t_max or self.neg_loss_factor < 0:
            raise ValueError(f"need lora_rank >= 1, 0 <= t_min < t_max and neg_loss_factor >= 0; got "
                             f"{self.lora_rank}, {self.t_min}, {self.t_max}, {self.neg_loss_factor}")


def hn_loss(mse_pos: torch.Tensor, mse_neg: torch.Tensor, factor: float = 1.0) -> torch.Tensor:
    """MSE_pos - clamp(MSE_neg, max = factor * MSE_pos) with the bound detached (scalars in, scalar out)."""
    return mse_pos - torch.clamp(mse_neg, max=factor * mse_pos.detach().item())


class HNObjective(nn.Module):
    """forward(inputs) -> (loss, terms); one U-Net call on [z_t; z_t] with [caption; hard negative]."""

    def __init__(self, unet: nn.Module, factor: float = 1.0) -> None:
        super().__init__()
        self.unet, self.factor = unet, float(factor)

    def forward(self, inputs: dict):
        z_t, t = inputs["z_t"], inputs["t"]  # (B, C, h, w), (B,)
        context = torch.cat([inputs["hidden_pos"], inputs["hidden_neg"]])  # (2B, L, D)
        pred = self.unet(torch.cat([z_t, z_t]), torch.cat([t, t]), encoder_hidden_states=context).sample
        pred_pos, pred_neg = pred.float().chunk(2)  # (B, C, h, w) each
        mse_pos = F.mse_loss(pred_pos, inputs["target"])
        mse_neg = F.mse_loss(pred_neg, inputs["target"])
        total = hn_loss(mse_pos, mse_neg, self.factor)
        return total, {"pos": mse_pos.detach(), "neg": mse_neg.detach(), "total": total.detach()}


def build_task(cfg: HNTrainConfig, device):
    """The :class:`~dptune.training.task.TrainingTask` of HN fine-tuning under ``cfg``."""
    from dptune.backbone import load_backbone
    from dptune.training.data import build_datasets
    from dptune.training.lora import add_lora, save_lora
    from dptune.training.task import TrainingTask
    from dptune.utils.io import save_json

    bb = load_backbone(cfg.model, device=str(device)).freeze()
    add_lora(bb.unet, cfg.lora_rank, cfg.lora_targets)
    objective = HNObjective(bb.unet, cfg.neg_loss_factor)
    params = [p for p in bb.unet.parameters() if p.requires_grad]

    @torch.no_grad()
    def prepare(batch: dict, gen: torch.Generator) -> dict:
        latents = bb.encode_images(batch["image"]).float()  # (B, C, h, w)
        noise = torch.randn(latents.shape, generator=gen).to(bb.device)  # one draw per image
        t = torch.randint(cfg.t_min, cfg.t_max, (len(latents),), generator=gen).to(bb.device)  # (B,)
        return {"z_t": bb.add_noise(latents, noise, t).to(bb.dtype), "t": t,
                "hidden_pos": bb.encode_text(batch["caption"]).hidden,
                "hidden_neg": bb.encode_text(batch["hn_caption"]).hidden,
                "target": bb.denoise_target(latents, noise, t).float()}

    def export(directory: Path) -> None:
        folder = Path(directory) / "lora"
        save_lora(bb.unet, folder)
        save_json(folder / "hn_diffusion_itm.json", {"method": "hn-diffusion-itm", "model": cfg.model,
                                                     "training": to_dict(cfg)})

    train_ds, _ = build_datasets(cfg, bb.image_size)
    return TrainingTask(objective, [{"params": params, "weight_decay": cfg.weight_decay}], prepare, export,
                        (train_ds, None))


def train_hn(cfg: HNTrainConfig, resume: bool = True, progress: bool = True):
    """Train the HN LoRA; returns the trainer's result (``out_dir``, ``step``, ...)."""
    from dptune.training.loop import run_task

    return run_task(cfg, lambda device: build_task(cfg, device), resume=resume, progress=progress)
