"""SoftREPA / AGSM as one ``nn.Module`` objective for the shared trainer: only the soft tokens learn.

``forward(inputs) -> (total, {term: detached scalar})`` with ``inputs`` = ``z_t`` (B, C, h, w) noisy latents
(one timestep for the batch, one noise draw per image), ``t`` (B,), ``hidden`` (B, L, D) caption contexts,
``pooled`` (B, Dp) or None, ``target`` (B, C, h, w) what the denoiser is trained to predict for image i.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from dptune.methods.soft_tokens.inject import inject_tokens
from dptune.methods.soft_tokens.losses import (
    Denoise,
    agsm_banks,
    agsm_loss,
    pair_errors,
    pair_predictions,
    softrepa_loss,
)
from dptune.methods.soft_tokens.tokens import SoftTokens


class SoftTokenObjective(nn.Module):
    """The frozen denoiser ``model`` (called through ``denoise``) with trainable ``tokens``."""

    def __init__(self, model: nn.Module, denoise: Denoise, tokens: SoftTokens) -> None:
        super().__init__()
        self.tokens = tokens
        self._frozen = (model, denoise)  # a tuple: the denoiser is no submodule (not trained, not checkpointed)

    def predictions(self, tokens: SoftTokens, inputs: dict, bank: torch.Tensor | None = None) -> torch.Tensor:
        """Predictions of all B x B pairs with ``tokens`` (bank per pair row, or None) -> (B, B, C, h, w)."""
        model, denoise = self._frozen
        with inject_tokens(model, tokens) as injection:
            injection.bank = bank
            return pair_predictions(denoise, inputs["z_t"], inputs["t"], inputs["hidden"], inputs.get("pooled"))


class SoftREPAObjective(SoftTokenObjective):
    """Contrastive cross-entropy over the B x B pair errors + the matched-pair MSE (SoftREPA)."""

    def __init__(self, model, denoise, tokens, logit_scale: float = 4.0, tau: float = 0.07,
                 mse_weight: float = 10.0) -> None:
        super().__init__(model, denoise, tokens)
        self.logit_scale, self.tau, self.mse_weight = logit_scale, tau, mse_weight

    def forward(self, inputs: dict):
        errors = pair_errors(self.predictions(self.tokens, inputs), inputs["target"])  # (B, B)
        return softrepa_loss(errors, self.logit_scale, self.tau, self.mse_weight)


class AGSMObjective(SoftTokenObjective):
    """Alignment-guided score matching with banks psi+ (matched pairs) and psi- (mismatched) and an EMA teacher.

    The EMA copy is a parameter set that requires grad but never gets one and is in no optimiser group: the
    trainer checkpoints every ``requires_grad`` parameter, so a resumed run continues the same EMA.
    """

    def __init__(self, model, denoise, tokens: SoftTokens, tau: float = 0.1, gain_pos: float = 1.0,
                 gain_neg: float = 1.0, ema_decay: float = 0.9999) -> None:
        super().__init__(model, denoise, tokens)
        if tokens.banks != 2:
            raise ValueError(f"AGSM needs two token banks (psi+, psi-); got {tokens.banks}")
        self.ema = copy.deepcopy(tokens)
        self.tau, self.gain_pos, self.gain_neg, self.ema_decay = tau, gain_pos, gain_neg, ema_decay
        self._seen_version: int | None = None

    def update_ema(self) -> None:
        """ema <- decay * ema + (1 - decay) * tokens, once per optimiser step: the step changes the tokens in
        place, which bumps their version counter (so gradient accumulation does not update it twice)."""
        version = sum(p._version for p in self.tokens.parameters())
        if version == self._seen_version:
            return
        self._seen_version = version
        with torch.no_grad():
            for ema, live in zip(self.ema.parameters(), self.tokens.parameters(), strict=True):
                ema.lerp_(live, 1.0 - self.ema_decay)

    def forward(self, inputs: dict):
        if self.training:
            self.update_ema()
        with torch.no_grad():  # the teacher: psi+ of the EMA tokens for every pair
            ema_pred = self.predictions(self.ema, inputs)  # (B, B, C, h, w)
        b = inputs["z_t"].shape[0]
        pred = self.predictions(self.tokens, inputs, agsm_banks(b, inputs["z_t"].device))  # (B, B, C, h, w)
        return agsm_loss(pred, ema_pred, inputs["target"], self.tau, self.gain_pos, self.gain_neg)

    def trainable(self) -> list[nn.Parameter]:
        return list(self.tokens.parameters())
