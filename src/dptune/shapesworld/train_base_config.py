"""Options of ``dptune shapesworld train-base`` (:func:`dptune.shapesworld.train_base.train_base`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from dptune.shapesworld.tiny_sd import TinySDConfig
from dptune.utils.config import field, from_dict, require_positive


@dataclass
class TrainBaseConfig:
    """Options of :func:`train_base` (architecture in ``model``)."""

    model: TinySDConfig = dataclasses.field(
        default_factory=TinySDConfig, metadata={"help": "architecture (TinySDConfig options as a mapping)"}
    )
    seed: int = field(0, help="seed of the world renders and of all training randomness")
    num_images: int = field(30000, help="training renders (rendered once, pre-encoded for the U-Net)")
    batch_size: int = field(64, help="batch size of both phases")
    vae_steps: int = field(600, help="VAE optimisation steps (phase A)")
    vae_lr: float = field(1e-3, help="VAE AdamW learning rate")
    kl_weight: float = field(1e-6, help="weight of the VAE KL term (keeps latents loosely near N(0, I))")
    unet_lr: float = field(1e-3, help="U-Net + text encoder AdamW learning rate after warm-up")
    freeze_text_encoder: bool = field(False, help="keep the text encoder at its random initialisation and train "
                                      "the U-Net only, as SD trains on a frozen CLIP text encoder (trained "
                                      "jointly, the encoder learned to ignore the relation words)")
    paraphrases: bool = field(False, help="caption the training images in the world's training wordings "
                              "(ShapesWorld: 4 of 6 per scene; the other 2 are the paraphrase split). Default: the "
                              "canonical caption only, the shipped model's recipe")
    init_vae: str = field("", help="start from the VAE of this pipeline folder (e.g. models/shapesworld-sd); "
                          "with --vae-steps 0 phase A is skipped")
    init_text_encoder: str = field("", help="start from this text encoder: a folder written by `dptune "
                                   "shapesworld pretrain-text` or a pipeline folder (with "
                                   "--freeze-text-encoder: SD's frozen pretrained CLIP, in small)")
    warmup_steps: int = field(200, help="linear learning-rate warm-up steps of phase B")
    weight_decay: float = field(0.01, help="AdamW weight decay (both phases)")
    max_unet_steps: int = field(100000, help="stop phase B after this many steps")
    max_minutes: float = field(45.0, help="wall-clock budget of the whole run (all phases, all resumes)")
    empty_caption_prob: float = field(0.1, help="share of empty captions (trains the unconditional branch)")
    min_snr_gamma: float = field(5.0, help="min-SNR loss weighting gamma (0 disables the weighting)")
    ema_decay: float = field(0.999, help="EMA decay of U-Net and text-encoder weights (saved model = EMA)")
    checkpoint_minutes: float = field(3.0, help="write a resumable checkpoint every this many minutes")
    checkpoint_dir: str = field("", help="checkpoint folder; empty = '<out_dir>.checkpoints' beside out_dir")
    threads: int = field(2, help="torch CPU threads (use 1 when other jobs share the cores)")
    log_every: int = field(50, help="record the mean loss every this many steps")

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = from_dict(TinySDConfig, self.model)
        require_positive(
            self, ("num_images", "batch_size", "threads", "log_every", "max_minutes", "checkpoint_minutes")
        )
        for name in ("vae_steps", "max_unet_steps", "warmup_steps", "min_snr_gamma", "weight_decay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0")
        if not 0.0 <= self.empty_caption_prob < 1.0:
            raise ValueError(f"empty_caption_prob={self.empty_caption_prob} must be in [0, 1)")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay={self.ema_decay} must be in [0, 1)")
        if self.batch_size > self.num_images:
            raise ValueError(f"batch_size={self.batch_size} exceeds num_images={self.num_images}; lower it")
