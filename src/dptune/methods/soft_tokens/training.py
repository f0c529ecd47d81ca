"""Training SoftREPA / AGSM tokens on the shared trainer (``dptune train softrepa`` / ``dptune train agsm``).

Data: any registered world's training set (ShapesWorld by default; COCO through its loaders) -- only the
image and its caption are used. The tokens land in ``<out_dir>/final/tokens`` (safetensors + JSON).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from dptune.training.settings import DataSettings
from dptune.utils.config import field, to_dict


@dataclass
class TokenTrainConfig(DataSettings):
    """Shared by both methods: model, data, tokens and timesteps (published SD 1.5 values as defaults)."""

    out_dir: str = field("runs/softrepa", help="run folder; the tokens are written to <out_dir>/final/tokens")
    steps: int = field(1000, help="optimiser steps")
    batch_size: int = field(8, help="B image-caption pairs per step (B^2 denoiser passes)")
    lr: float = field(1e-3, help="AdamW learning rate (published: 1e-3)")
    weight_decay: float = field(1e-4, help="AdamW weight decay (SoftREPA: 1e-4)")
    grad_clip: float = field(1.0, help="max gradient norm")
    validate_every: int = field(10**9, help="no validation pass (evaluate with `dptune eval`)")
    checkpoint_every: int = field(500, help="steps between checkpoints")
    val_size: int = field(1, help="held-out samples (not used for validation; the world requires one)")
    num_tokens: int = field(4, help="K soft tokens per block (published: 4)")
    blocks: list[str] | None = field(None, help="blocks that get tokens, e.g. down0 down1; default: the U-Net's "
                                     "down blocks with cross-attention (SoftREPA on SD 1.5)")
    time_buckets: int = field(100, help="time tokens: one per t // 10 (100 for 1000 training steps)")
    init_std: float = field(0.02, help="standard deviation of the initial tokens")
    t_min: int = field(0, help="smallest training timestep (inclusive)")
    t_max: int = field(1000, help="largest training timestep (exclusive); one t per batch, uniform")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (the loss contrasts the captions of a batch); got "
                             f"{self.batch_size}")
        if self.num_tokens < 1 or not 0 <= self.t_min < self.t_max:
            raise ValueError(f"need num_tokens >= 1 and 0 <= t_min < t_max; got {self.num_tokens}, "
                             f"{self.t_min}, {self.t_max}")


@dataclass
class SoftREPATrainConfig(TokenTrainConfig):
    logit_scale: float = field(4.0, help="logits = logit_scale * exp(-error / tau) (published: 4)")
    tau: float = field(0.07, help="temperature of the logits (published: 0.07)")
    mse_weight: float = field(10.0, help="weight of the matched-pair MSE (published SD 1.5 / SDXL: 10)")


@dataclass
class AGSMTrainConfig(TokenTrainConfig):
    out_dir: str = field("runs/agsm", help="run folder; the tokens are written to <out_dir>/final/tokens")
    batch_size: int = field(4, help="B image-caption pairs per step (published: 4)")
    tau: float = field(0.1, help="temperature of the alignment weights softmax_j(-error / tau) (published: 0.1)")
    gain_pos: float = field(1.0, help="g+: matched pairs move along +D (published SD 1.5: 1)")
    gain_neg: float = field(1.0, help="g-: mismatched pairs move along -D (published SD 1.5: 1)")
    ema_decay: float = field(0.9999, help="decay of the EMA teacher (published: 0.9999)")


def build_task(cfg: TokenTrainConfig, method: str, device):
    """The :class:`~dptune.training.task.TrainingTask` of ``method`` ('softrepa' or 'agsm') under ``cfg``."""
    from dptune.backbone import load_backbone
    from dptune.methods.soft_tokens.inject import architecture_of, context_dims, denoiser_call
    from dptune.methods.soft_tokens.objective import AGSMObjective, SoftREPAObjective
    from dptune.methods.soft_tokens.tokens import SoftTokens, save_tokens
    from dptune.training.data import build_datasets
    from dptune.training.task import TrainingTask

    bb = load_backbone(cfg.model, device=str(device)).freeze()
    unet = bb.unet
    tokens = SoftTokens(architecture_of(unet), context_dims(unet, cfg.blocks), cfg.num_tokens,
                        banks=2 if method == "agsm" else 1, time_buckets=cfg.time_buckets, init_std=cfg.init_std,
                        seed=cfg.seed).to(bb.device)
    if method == "agsm":
        objective = AGSMObjective(unet, denoiser_call(unet), tokens, cfg.tau, cfg.gain_pos, cfg.gain_neg,
                                  cfg.ema_decay)
    else:
        objective = SoftREPAObjective(unet, denoiser_call(unet), tokens, cfg.logit_scale, cfg.tau, cfg.mse_weight)
    base = [p for n, p in tokens.named_parameters() if n.startswith("base.")]
    time = [p for n, p in tokens.named_parameters() if n.startswith("time.")]

    @torch.no_grad()
    def prepare(batch: dict, gen: torch.Generator) -> dict:
        latents = bb.encode_images(batch["image"]).float()  # (B, 4, h, w)
        hidden = bb.encode_text(batch["caption"]).hidden.float()  # (B, L, D)
        noise = torch.randn(latents.shape, generator=gen).to(bb.device)  # one draw per image
        t = torch.randint(cfg.t_min, cfg.t_max, (1,), generator=gen).to(bb.device).expand(len(latents))
        return {"z_t": bb.add_noise(latents, noise, t), "t": t, "hidden": hidden,
                "target": bb.denoise_target(latents, noise, t)}

    def export(directory: Path) -> None:
        save_tokens(tokens, Path(directory) / "tokens", {"method": method, "model": cfg.model,
                                                          "training": to_dict(cfg)})

    datasets = build_datasets(cfg, bb.image_size)
    # the time tokens are offsets, not weights to shrink toward zero: no decay on them
    groups = [{"params": base, "weight_decay": cfg.weight_decay}, {"params": time, "weight_decay": 0.0}]
    return TrainingTask(objective, groups, prepare, export, (datasets[0], None))


def train_tokens(cfg: TokenTrainConfig, method: str, resume: bool = True, progress: bool = True):
    """Train ``method``'s tokens; returns the trainer's result (``out_dir``, ``step``, ...)."""
    from dptune.training.loop import run_task

    # find_unused_parameters: AGSM's EMA parameters get no gradient
    return run_task(cfg, lambda device: build_task(cfg, method, device), True, resume, progress)
