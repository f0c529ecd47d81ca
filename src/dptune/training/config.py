"""Training configuration for both DPT stages (paper Appendix B.3.1), with help text and validation.

Defaults are the paper's where it states them; the ShapesWorld-sized values used by the demo live in the
demo, and the paper-scale values in ``configs/paper_*.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass

from dptune.training.settings import DataSettings
from dptune.utils.config import field

STAGES = ("probe", "tune")
LORA_TARGETS = {
    # peft matches a string target_modules as a regex against the full module name
    "cross": r".*attn2\.(to_q|to_k|to_v|to_out\.0)$",  # paper: cross-attention only
    "all": r".*attn[12]\.(to_q|to_k|to_v|to_out\.0)$",  # official code: every attention processor
}

# Stage defaults on top of TrainConfig's field defaults (paper B.3.1; stage 2 also follows the official code's
# MSE anchor of 1). `TrainConfig.for_stage("tune")` is the paper's stage 2, not stage 1 with stage="tune".
STAGE_DEFAULTS: dict[str, dict] = {
    "probe": {"stage": "probe", "out_dir": "runs/probe"},
    "tune": {"stage": "tune", "out_dir": "runs/tune", "steps": 6000, "grad_accum": 8, "lr_schedule": "cosine",
             "mse_weight": 1.0},
}


@dataclass
class TrainConfig(DataSettings):
    """DPT stages 1 and 2 (paper B.3.1): the shared trainer's settings plus what DPT trains and how."""

    stage: str = field("probe", help="'probe' = stage 1 (SD frozen, adapter trains); 'tune' = stage 2 (LoRA + adapter)")
    # probed features
    blocks: list[str] = field(["mid"], help="U-Net block(s) to probe: down0..down3, mid, up0..up3 (paper: mid)")
    fuse: str = field("sum", help="how several blocks combine: 'sum' (equal channels) or 'concat'")
    adapter_init: str | None = field(None, help="start from this saved adapter (stage 2: the stage-1 adapter)")
    adapter_d_model: int = field(256, help="adapter width d (paper 256)")
    adapter_ffn: int = field(2048, help="adapter feed-forward width (paper 2048)")
    adapter_heads: int = field(8, help="adapter attention heads (paper 8)")
    adapter_queries: int = field(110, help="adapter queries N, the first 10 for matching (paper 110)")
    adapter_dropout: float = field(0.1, help="dropout in the adapter transformer (paper/DETR 0.1; on ShapesWorld "
                                   "0 lets REC boxes leave the image-independent anchor solution)")
    # optimisation (AdamW, paper B.3.1)
    t_min: int = field(0, help="smallest training timestep (inclusive)")
    t_max: int = field(1000, help="largest training timestep (exclusive); uniform in [t_min, t_max)")
    rec_t_max: int | None = field(None, help="largest timestep (exclusive) of the REC pass; None = t_max. Boxes "
                                  "need a visible image: ShapesWorld REC only learns with a low-noise window")
    # losses
    loss_weights: dict = field({}, help="overrides of dptune.losses.LossWeights (t2i, i2t, prob, l1, giou, ...)")
    mse_weight: float = field(0.0, help="weight of the denoising MSE term (stage 2 anchor; paper Table 9)")
    itm_weight: float = field(1.0, help="scale of the whole matching loss (0 = grounding only, ablation)")
    rec_weight: float = field(1.0, help="scale of the whole grounding loss (0 = matching only, ablation)")
    contrast_weight: float = field(0.0, help="stage 2: weight of the denoising contrast (extension, not in the "
                                   "paper): the true caption must denoise better than its hard negative")
    contrast_tau: float = field(0.05, help="relative margin of the denoising contrast (0.05 = a 5%% lower error "
                                "gives logit 1)")
    # stage 2
    lora_rank: int = field(4, help="LoRA rank (paper 4)")
    lora_targets: str = field("cross", help="'cross' = cross-attention only (paper), 'all' = all attention (official)")
    train_adapter: bool = field(True, help="stage 2 also trains the adapter ('DA + LoRA', paper Table 11)")
    lora_text_encoder: bool = field(False, help="stage 2 also puts LoRA on the text encoder (extension, not in "
                                    "the paper: for text encoders that embed hard-negative captions alike)")
    text_encoder_lr: float | None = field(None, help="learning rate of the text-encoder LoRA (None = lr)")
    # validation / checkpoints / logging
    val_t: int = field(250, help="fixed timestep of ITM/REC validation (paper Table 10: t=250 best)")
    gen_val_prompts: int = field(0, help="stage 2: prompts per category for generation-alignment validation (0 = off)")
    gen_val_steps: int = field(25, help="sampling steps of the generation validation")
    gen_val_guidance: float = field(4.0, help="guidance scale of the generation validation")

    @classmethod
    def for_stage(cls, stage: str, **overrides) -> TrainConfig:
        """The paper's settings of ``stage`` ('probe' = stage 1, 'tune' = stage 2) with ``overrides``."""
        if stage not in STAGE_DEFAULTS:
            raise ValueError(f"TrainConfig: stage must be one of {STAGES}; got {stage!r}")
        return cls(**{**STAGE_DEFAULTS[stage], **overrides})

    def __post_init__(self) -> None:
        super().__post_init__()
        checks = [
            (self.stage in STAGES, f"stage must be one of {STAGES}"),
            (self.lora_targets in LORA_TARGETS, f"lora_targets must be one of {sorted(LORA_TARGETS)}"),
            (self.fuse in ("sum", "concat"), "fuse must be 'sum' or 'concat'"),
            (0 <= self.t_min < self.t_max, "need 0 <= t_min < t_max"),
            (self.rec_t_max is None or self.t_min < self.rec_t_max <= 1000, "need t_min < rec_t_max <= 1000"),
            (self.lora_rank > 0, "lora_rank must be > 0"),
            (min(self.mse_weight, self.itm_weight, self.rec_weight) >= 0, "loss weights must be >= 0"),
            (self.itm_weight + self.rec_weight + self.mse_weight + self.contrast_weight > 0,
             "at least one loss weight must be > 0"),
            (bool(self.blocks), "blocks must name at least one U-Net block"),
            (self.stage == "tune" or (self.mse_weight == 0), "mse_weight needs stage 'tune' (stage 1 freezes SD)"),
            (self.stage == "tune" or not self.lora_text_encoder, "lora_text_encoder needs stage 'tune'"),
            (self.stage == "tune" or self.contrast_weight == 0, "contrast_weight needs stage 'tune'"),
            (self.contrast_weight >= 0 and self.contrast_tau > 0, "need contrast_weight >= 0 and contrast_tau > 0"),
            (self.text_encoder_lr is None or self.text_encoder_lr > 0, "text_encoder_lr must be > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"TrainConfig: {message}")
        if isinstance(self.blocks, str):
            self.blocks = [b.strip() for b in self.blocks.split(",") if b.strip()]
