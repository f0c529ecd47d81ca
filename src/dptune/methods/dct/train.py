"""DCT training on the shared trainer: sample with the token, classify the image, push toward the target class.

One micro-batch: prompts holding the token -> full CFG sampling from fresh noise (gradient through the last
``grad_steps`` steps) -> VAE decode -> the frozen classifier (its own resize and normalisation) ->
cross-entropy to the target class. Only the token row is a trainable parameter. One optimiser step is one
paper epoch (``batch_size x grad_accum`` images); the epoch's classifier accuracy is the validation score,
and the run stops early (paper) after ``patience`` epochs without a better score or once it exceeds
``stop_accuracy``.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dptune.methods.dct.sampling import check_gradient_path, ddim_for, decode_unit, sample_latents
from dptune.methods.dct.token import TokenEmbedding, add_token, initial_row, save_token, text_embeddings_module
from dptune.training.loop import Trainer, TrainResult, make_accelerator
from dptune.training.task import TrainingTask

NOISE_SEED0 = 2**40  # training noise seeds are drawn from [2**40, 2**41): disjoint from evaluation seeds


class DCTObjective(nn.Module):
    """Loss of one micro-batch; ``backbone.tokenizer`` must already hold the token (see :func:`build_objective`)."""

    def __init__(self, backbone, classifier: nn.Module, token: TokenEmbedding, target: int, steps: int,
                 guidance: float, grad_steps: int, decode: str = "x0") -> None:
        super().__init__()
        self.backbone, self.target, self.guidance = backbone, int(target), float(guidance)
        self.frozen = nn.ModuleList([backbone.unet, backbone.vae, backbone.text_encoder, classifier])
        self.classifier, self.token = classifier, token
        self.grad_steps, self.decode = int(grad_steps), decode
        self.scheduler = ddim_for(backbone, steps)
        check_gradient_path(self.scheduler, self.grad_steps, decode)
        with torch.no_grad():
            self.register_buffer("uncond", backbone.encode_text([""]).hidden.detach(), persistent=False)  # (1, L, D)
        self.correct = self.seen = 0  # classifier hits since the last validation (one epoch)

    def train(self, mode: bool = True) -> DCTObjective:
        super().train(mode)
        self.frozen.eval()  # frozen networks stay in eval mode (no dropout, BatchNorm uses running stats)
        return self

    def images(self, prompts: list[str], noise: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] sampled with the token's current embedding (differentiable)."""
        cond = self.backbone.encode_text(prompts).hidden  # (B, L, D), depends on the token row
        uncond = self.uncond.expand(cond.shape[0], -1, -1)
        latents = sample_latents(self.backbone, self.scheduler, cond, uncond, noise, self.guidance,
                                 self.grad_steps, self.decode)
        return decode_unit(self.backbone, latents)

    def forward(self, inputs: dict) -> tuple[torch.Tensor, dict]:
        logits = self.classifier(self.images(inputs["prompts"], inputs["noise"]))  # (B, C)
        target = torch.full((logits.shape[0],), self.target, dtype=torch.long, device=logits.device)
        loss = F.cross_entropy(logits, target)
        hits = logits.detach().argmax(1).eq(target)
        self.correct, self.seen = self.correct + int(hits.sum()), self.seen + len(hits)
        return loss, {"ce": loss.detach(), "accuracy": hits.float().mean(), "total": loss.detach()}

    def epoch_accuracy(self) -> dict:
        acc = self.correct / self.seen if self.seen else 0.0
        self.correct = self.seen = 0
        return {"select": acc, "accuracy": acc}


class PromptDataset:
    """Training items: the class prompts, repeated to fill at least one batch."""

    def __init__(self, prompts: list[str], batch_size: int) -> None:
        self.prompts = list(prompts)
        self.size = max(len(self.prompts), batch_size)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> dict:
        return {"prompt": self.prompts[i % len(self.prompts)]}


def prepare_noise(batch: dict, gen: torch.Generator, shape: tuple[int, ...]) -> dict:
    """Fresh initial noise per image, from per-image seeds in [2**40, 2**41) drawn from the step's generator."""
    seeds = torch.randint(NOISE_SEED0, 2 * NOISE_SEED0, (len(batch["prompt"]),), generator=gen)  # (B,)
    noise = torch.stack([torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds])
    return {"prompts": list(batch["prompt"]), "noise": noise, "seeds": seeds}  # noise (B, C, h, w)


def stop_reason(history: list[dict], patience: int, stop_accuracy: float) -> str | None:
    """The paper's early stop on the per-epoch accuracies, or None to go on."""
    if not history:
        return None
    scores = [h["accuracy"] for h in history]
    if scores[-1] > stop_accuracy:
        return f"accuracy {scores[-1]:.2f} > {stop_accuracy}"
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))  # first epoch reaching the best score
    if len(scores) - 1 - best >= patience:
        return f"no better accuracy in {patience} epochs"
    return None


class StopEarly(Exception):
    pass


class DCTTrainer(Trainer):
    """The shared trainer plus the paper's early stop, checked after each validation (= epoch)."""

    def validate(self, val_batches: list[dict]) -> dict:
        metrics = super().validate(val_batches)
        reason = stop_reason(self.history, self.cfg.patience, self.cfg.stop_accuracy)
        if reason:
            metrics["stop"] = reason  # the same dict as history[-1]: saved in the checkpoint's and final/ state.json
            self.log({**metrics, "stopped": 1}, prefix="val/")
            raise StopEarly(reason)
        return metrics


def build_task(cfg, objective: DCTObjective, prompts: list[str], meta: dict) -> TrainingTask:
    bb = objective.backbone
    side = cfg.size // bb.vae_scale_factor if getattr(cfg, "size", None) else bb.latent_size
    shape = (bb.unet.config.in_channels, side, side)
    token = cfg.token

    def export(directory: Path) -> None:
        save_token(Path(directory) / "tokens", token, objective.token.row, meta)

    return TrainingTask(objective=objective,
                        param_groups=[{"params": [objective.token.row], "weight_decay": cfg.weight_decay}],
                        prepare=lambda batch, gen: prepare_noise(batch, gen, shape), export=export,
                        datasets=(PromptDataset(prompts, cfg.batch_size), None),
                        validate=lambda _batches: objective.epoch_accuracy())


def fit(cfg, task: TrainingTask, progress: bool = True) -> TrainResult:
    """Run the shared trainer with the early stop; a stopped run still writes its checkpoint and final/."""
    Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
    trainer = DCTTrainer(cfg, task, make_accelerator(cfg), progress=progress)
    try:
        return trainer.fit(resume=True)
    except StopEarly:  # the reason is in the last validation entry ("stop")
        trainer.save()
        trainer.export("final")
        trainer.acc.end_training()
        return TrainResult(trainer.out, trainer.step, trainer.history, trainer.best, stopped_early=True)


def build_objective(backbone, classifier: nn.Module, cfg, target: int, steps: int, guidance: float) -> DCTObjective:
    """Freeze everything, add ``cfg.token`` to a copy of the tokenizer and install its row in the text encoder."""
    backbone.freeze()
    classifier.requires_grad_(False)
    tokenizer, token_id, init_id = add_token(backbone.tokenizer, cfg.token, cfg.initializer or "a")
    base = text_embeddings_module(backbone.text_encoder)
    module = TokenEmbedding(base, token_id, initial_row(backbone.text_encoder, init_id))
    backbone.text_encoder.set_input_embeddings(module)
    backbone.tokenizer = tokenizer
    return DCTObjective(backbone, classifier, module, target, steps, guidance, cfg.grad_steps, cfg.decode)
