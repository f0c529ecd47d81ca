"""Attend-and-Excite through diffusers' ``StableDiffusionAttendAndExcitePipeline`` (a deprecated pipeline that
still imports and runs with diffusers 0.42), with three changes made by overriding two of its methods:

* the softmax over text tokens covers the prompt's own tokens only (BOS, EOS and the padding after EOS are
  excluded -- diffusers keeps the padding, which on a 16-token tokenizer is most of the softmax);
* temperature, smoothing sigma / kernel size and the refinement cap are options (diffusers hard-codes 100,
  0.5 / 3 and 20 -- the defaults here);
* the U-Net's attention processors are restored even when generation fails (:func:`restored_attention`;
  diffusers restores them only at the end of a successful call), since other methods share the U-Net.

The loss (paper Sec. 3): A = mean over layers/heads of the cross-attention maps of side ``res``; for subject
token s, m_s = max over pixels of Gaussian-smoothed softmax(temperature * A[:, :, words])[s]; loss = max_s
(1 - m_s). The latent moves against its gradient with step alpha_t = scale_factor * sqrt(linspace(1, 0.5)).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from diffusers import StableDiffusionAttendAndExcitePipeline


def gaussian_kernel(sigma: float, size: int) -> torch.Tensor:
    """(size, size) kernel summing to 1, with the released A&E code's profile exp(-((x - mu) / (2 sigma))^2)."""
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2  # (size,)
    g = torch.exp(-((x / (2 * sigma)) ** 2))  # (size,)
    k = g[:, None] * g[None, :]  # (size, size)
    return k / k.sum()


def attention_maxima(maps: torch.Tensor, indices: list[int], n_tokens: int, temperature: float = 100.0,
                     sigma: float = 0.5, kernel_size: int = 3) -> torch.Tensor:
    """Max over pixels of each subject's smoothed attention -> (K,).

    ``maps`` (r, r, L): cross-attention probabilities averaged over layers and heads; ``indices``: subject
    positions (start token = 0); ``n_tokens``: the prompt's token count including start and end tokens.
    """
    if any(not 1 <= i < n_tokens - 1 for i in indices):
        raise ValueError(f"subject token positions {indices} must lie inside the prompt's words "
                         f"(1..{n_tokens - 2}); check token_indices")
    words = maps[:, :, 1 : n_tokens - 1] * temperature  # (r, r, W) prompt words only
    probs = torch.softmax(words, dim=-1)  # (r, r, W)
    sel = probs[:, :, [i - 1 for i in indices]].permute(2, 0, 1)[:, None]  # (K, 1, r, r)
    pad = kernel_size // 2
    mode = "reflect" if pad < min(sel.shape[-2:]) else "replicate"
    padded = F.pad(sel, (pad, pad, pad, pad), mode=mode)  # (K, 1, r + 2p, r + 2p)
    kernel = gaussian_kernel(sigma, kernel_size).to(sel)[None, None]  # (1, 1, k, k)
    smooth = F.conv2d(padded, kernel)  # (K, 1, r, r)
    return smooth.amax(dim=(1, 2, 3))  # (K,)


def excite_loss(maxima: torch.Tensor) -> torch.Tensor:
    """loss = max_s (1 - m_s), clamped at 0: the weakest subject decides."""
    return (1.0 - maxima).clamp(min=0).max()


def attention_sides(unet, latent_side: int) -> list[int]:
    """Sides of the U-Net's cross-attention maps for a square latent of ``latent_side``."""
    cfg = unet.config
    sides = [latent_side // 2**i for i, kind in enumerate(cfg.down_block_types) if "CrossAttn" in kind]
    if "CrossAttn" in str(cfg.mid_block_type):
        sides.append(latent_side // 2 ** (len(cfg.down_block_types) - 1))
    if not sides:
        raise ValueError("this U-Net has no cross-attention layer; Attend-and-Excite cannot run on it")
    return sorted(set(sides))


def pick_resolution(unet, latent_side: int, wanted: int) -> int:
    """``wanted`` when the U-Net has maps of that side, else the largest smaller one (else the smallest)."""
    sides = attention_sides(unet, latent_side)
    if wanted in sides:
        return wanted
    smaller = [s for s in sides if s < wanted]
    return max(smaller) if smaller else min(sides)


@contextlib.contextmanager
def restored_attention(unet) -> Iterator[None]:
    """Restore ``unet``'s attention processors (the same objects) and train/eval state on exit, always."""
    saved, training = dict(unet.attn_processors), unet.training
    try:
        yield
    finally:
        unet.set_attn_processor(saved)
        unet.train(training)


class AttendExcitePipeline(StableDiffusionAttendAndExcitePipeline):
    """diffusers' pipeline with the loss of :func:`attention_maxima` (set ``ae_config`` and ``n_tokens``)."""

    ae_config = None  # AttendExciteConfig
    n_tokens = 0  # token count (start and end included) of the prompt being generated

    def _compute_max_attention_per_index(self, attention_maps: torch.Tensor, indices: list[int]):
        cfg = self.ae_config
        maxima = attention_maxima(attention_maps, indices, self.n_tokens, cfg.temperature, cfg.sigma,
                                  cfg.kernel_size)
        return list(maxima)  # diffusers' loss takes a list of per-token maxima

    def _perform_iterative_refinement_step(self, *args, **kwargs):
        kwargs["max_refinement_steps"] = self.ae_config.max_refinement_steps
        return super()._perform_iterative_refinement_step(*args, **kwargs)

    def loss_at(self, latent: torch.Tensor, t, text_hidden: torch.Tensor, indices: list[int],
                res: int) -> torch.Tensor:
        """The A&E loss of ``latent`` (1, C, h, w) at timestep ``t`` given the prompt's U-Net context
        ``text_hidden`` (1, L, D); differentiable w.r.t. ``latent`` (which must require grad). Hooks are
        installed for this call only."""
        from diffusers.pipelines.deprecated.stable_diffusion_attend_and_excite import (
            pipeline_stable_diffusion_attend_and_excite as ae,
        )

        with restored_attention(self.unet):
            self.attention_store = ae.AttentionStore((res, res))
            self.register_attention_control()
            self.unet(latent, t, encoder_hidden_states=text_hidden)
            maxima = self._aggregate_and_get_max_attention_per_token(indices=indices)
        return excite_loss(torch.stack(maxima))

    @classmethod
    def over(cls, sd_pipe, config) -> AttendExcitePipeline:
        """An A&E pipeline sharing ``sd_pipe``'s modules and scheduler."""
        from diffusers.utils import logging

        parts = {k: sd_pipe.components[k] for k in ("vae", "text_encoder", "tokenizer", "unet", "scheduler")}
        level = logging.get_verbosity()
        logging.set_verbosity_error()  # the "deprecated pipeline" notice: we chose it knowingly (module docstring)
        try:
            pipe = cls(**parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        finally:
            logging.set_verbosity(level)
        pipe.set_progress_bar_config(disable=True)
        pipe.ae_config = config
        return pipe
