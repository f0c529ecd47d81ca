"""DPT's training task: backbone (frozen, maybe half precision), LoRA (stage 2), adapter, probe, objective,
exports and validation, handed to the shared :class:`~dptune.training.loop.Trainer`."""

from __future__ import annotations

import torch

from dptune.adapter import DiscriminativeAdapter, DPTProbe, load_adapter, new_adapter
from dptune.backbone import SDBackbone, load_backbone
from dptune.losses import LossWeights
from dptune.training.config import TrainConfig
from dptune.training.lora import add_lora, add_text_encoder_lora
from dptune.training.objective import DPTObjective, prepare_inputs
from dptune.training.task import TrainingTask

HALF = {"fp16": torch.float16, "bf16": torch.bfloat16}


def build_backbone(cfg: TrainConfig, device) -> SDBackbone:
    # Frozen SD may run in half precision on GPU; on CPU half is slow and imprecise, keep fp32.
    dtype = HALF.get(cfg.mixed_precision) if torch.device(device).type == "cuda" else None
    return load_backbone(cfg.model, device=str(device), dtype=dtype).freeze()


def build_adapter(cfg: TrainConfig, backbone: SDBackbone) -> DiscriminativeAdapter:
    in_channels = DPTProbe.feature_channels(backbone, cfg.blocks, cfg.fuse)
    if cfg.adapter_init:
        return load_adapter(cfg.adapter_init, expect_in_channels=in_channels, expect_text_dim=backbone.text_dim)
    return new_adapter(backbone, cfg.blocks, cfg.fuse, d_model=cfg.adapter_d_model, ffn=cfg.adapter_ffn,
                       heads=cfg.adapter_heads, num_queries=cfg.adapter_queries, dropout=cfg.adapter_dropout)


def build_objective(cfg: TrainConfig, backbone: SDBackbone) -> DPTObjective:
    """Stage 1: only the adapter trains. Stage 2: LoRA on the U-Net (+ the adapter unless disabled)."""
    torch.manual_seed(cfg.seed)  # adapter / LoRA initialisation
    adapter = build_adapter(cfg, backbone).to(backbone.device)
    if cfg.stage == "tune":
        add_lora(backbone.unet, cfg.lora_rank, cfg.lora_targets)
        if cfg.lora_text_encoder:
            add_text_encoder_lora(backbone.text_encoder, cfg.lora_rank)
        adapter.requires_grad_(cfg.train_adapter)
    probe = DPTProbe(backbone, adapter, cfg.blocks, cfg.fuse)
    weights = LossWeights(**cfg.loss_weights)
    return DPTObjective(probe, weights, cfg.itm_weight, cfg.rec_weight, cfg.mse_weight,
                        train_text_encoder=cfg.stage == "tune" and cfg.lora_text_encoder,
                        contrast_weight=cfg.contrast_weight, contrast_tau=cfg.contrast_tau)


def param_groups(model: torch.nn.Module, weight_decay: float, text_encoder_lr: float | None = None) -> list[dict]:
    """AdamW groups: no weight decay on the temperature, biases, norms and 1-d parameters; the text-encoder
    LoRA (``text_encoder.*``) in groups of its own when it has its own learning rate."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        own_lr = text_encoder_lr is not None and name.startswith("text_encoder.")
        decays = not (p.ndim <= 1 or name.endswith("logit_scale"))
        groups.setdefault((own_lr, decays), []).append(p)
    if not groups:
        raise ValueError("nothing to train: every parameter is frozen (stage 2 with train_adapter=False "
                         "needs LoRA; check lora settings)")
    out = []
    # decaying group first: the order earlier checkpoints' optimizer states were saved in
    for (own_lr, decays), params in sorted(groups.items(), key=lambda kv: (kv[0][0], not kv[0][1])):
        group = {"params": params, "weight_decay": weight_decay if decays else 0.0}
        if own_lr:
            group["lr"] = text_encoder_lr
        out.append(group)
    return out


def build_dpt_task(cfg: TrainConfig, device) -> TrainingTask:
    """Stage ``cfg.stage`` of DPT as a task for the shared trainer."""
    from dptune.training.data import build_datasets
    from dptune.training.lora import save_lora
    from dptune.training.validation import discriminative_metrics, generation_alignment

    backbone = build_backbone(cfg, device)
    objective = build_objective(cfg, backbone)
    rec_range = None if cfg.rec_t_max is None else (cfg.t_min, cfg.rec_t_max)

    def prepare(batch: dict, gen: torch.Generator) -> dict:
        return prepare_inputs(backbone, batch, gen, (cfg.t_min, cfg.t_max), rec_range,
                              encode_text=objective.text_encoder is None)

    def export(directory) -> None:
        from dptune.adapter import save_adapter

        save_adapter(objective.probe.adapter, directory / "adapter")
        if cfg.stage == "tune":
            save_lora(backbone.unet, directory / "lora", backbone.text_encoder)

    def validate(val_batches: list) -> dict:
        metrics = discriminative_metrics(objective, val_batches, cfg.val_t, seed=cfg.seed)
        if cfg.stage == "tune":
            metrics.update(generation_alignment(cfg, backbone))
        # paper B.3.1: stage 2 keeps the checkpoint with the best generation alignment
        metrics["select"] = metrics.get("gen_overall", (metrics["itm_hn"] + metrics["rec_p1"]) / 2)
        return metrics

    return TrainingTask(objective, param_groups(objective, cfg.weight_decay, cfg.text_encoder_lr), prepare, export,
                        build_datasets(cfg, backbone.image_size), validate,
                        upstream_seconds=_upstream_seconds(cfg.adapter_init))


def _upstream_seconds(adapter_init: str | None) -> float:
    """Training time recorded beside the adapter stage 2 starts from (stage 1's ``final/state.json``)."""
    from pathlib import Path

    from dptune.utils.io import load_json

    state = Path(adapter_init).parent / "state.json" if adapter_init else None
    return float(load_json(state).get("train_seconds") or 0.0) if state is not None and state.is_file() else 0.0
