"""Attend-and-Excite for a whole batch at once, giving the images of diffusers' per-image pipeline.

diffusers' ``StableDiffusionAttendAndExcitePipeline`` excites one sample at a time (a Python loop with batch-1
U-Net forward and backward passes). The U-Net treats samples independently (GroupNorm and attention are per
sample), so the gradient of the SUM of the per-sample losses w.r.t. the batch latents is, row by row, each
sample's own gradient: one batched forward/backward replaces B batch-1 ones. What must be kept per sample:

* its prompt, subject positions and token count (the loss of :func:`~.pipeline.attention_maxima`);
* the iterative refinement at threshold steps. diffusers refines a sample only when its loss is above
  ``1 - threshold``, and its loop checks the loss computed BEFORE the last update, so it always makes one
  update more than strictly needed (an update at a loss already under the target, then stops). It also stops
  after ``max_refinement_steps`` updates (at least one). Samples leave the batched loop on those same rules,
  so each sample gets exactly its per-image sequence of updates;
* the step size ``scale_factor * sqrt(linspace(1, 0.5, len(timesteps)))[i]`` (no alphas_cumprod), applied at
  steps ``i < max_iter_to_alter`` and inside refinements (also at steps past ``max_iter_to_alter``); a loss of
  exactly 0 makes no update.

The U-Net keeps diffusers' A&E attention processors for the whole call, the denoising step included (they
compute attention explicitly, unlike the default fused kernel), so the arithmetic matches the per-image path:
a batch of one gives diffusers' images bit for bit; larger batches differ only by batch-size rounding in the
U-Net's kernels, which the updates amplify a little (max 2e-4 on [0, 1] images over 16 shipped-model images).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dptune.methods.attend_excite.pipeline import attention_maxima, excite_loss, restored_attention

PLACES = ("up", "down", "mid")  # diffusers' aggregation order (sums in the same order -> same rounding)


@dataclass
class Subject:
    """One sample's loss inputs: subject positions (start token = 0) and the prompt's token count."""

    indices: list[int]
    n_tokens: int


def per_sample_maps(store, batch: int, res: int) -> torch.Tensor:
    """The stored cross-attention maps of side ``res`` averaged over layers and heads, per sample -> (B, r, r, L).

    Each stored map is (B * heads, r * r, L), batch-major (diffusers' ``head_to_batch_dim``)."""
    maps = [item.reshape(batch, -1, res, res, item.shape[-1])  # (B, heads, r, r, L)
            for place in PLACES for item in store.attention_store[place]]
    if not maps:
        raise ValueError(f"the U-Net produced no {res}x{res} cross-attention map to excite")
    stacked = torch.cat(maps, dim=1)  # (B, layers * heads, r, r, L)
    return stacked.sum(1) / stacked.shape[1]  # (B, r, r, L): sum / count, as diffusers averages


class BatchedAttendExcite:
    """(prompts, seeds, subjects) -> images (B, H, W, 3) in [0, 1] over an :class:`~.pipeline.AttendExcitePipeline`.

    ``thresholds``: {step: threshold} of the refinements; ``max_iter``: updates at steps ``< max_iter``."""

    def __init__(self, pipe, res: int, max_iter: int, thresholds: dict[int, float]) -> None:
        self.pipe, self.res, self.max_iter, self.thresholds = pipe, res, max_iter, dict(thresholds)
        self.cfg = pipe.ae_config  # temperature, smoothing, refinement cap
        self.refinements: dict[int, list[int]] = {}  # last call: {step: updates of its refinement per sample}

    def __call__(self, prompts: list[str], seeds: list[int], subjects: list[Subject], steps: int,
                 guidance: float, negative_prompt: str | None = None, size: int | None = None) -> np.ndarray:
        from diffusers.pipelines.deprecated.stable_diffusion_attend_and_excite import (
            pipeline_stable_diffusion_attend_and_excite as ae,
        )

        if not len(prompts) == len(seeds) == len(subjects):
            raise ValueError(f"got {len(prompts)} prompts, {len(seeds)} seeds, {len(subjects)} subject lists")
        pipe, self.refinements = self.pipe, {}
        with restored_attention(pipe.unet), torch.no_grad():
            pipe.attention_store = ae.AttentionStore((self.res, self.res))
            pipe.register_attention_control()  # stores maps only from forwards that carry gradients
            image = self._generate(list(prompts), [int(s) for s in seeds], subjects, steps, guidance,
                                   negative_prompt, size)
        out = pipe.image_processor.postprocess(image, output_type="np", do_denormalize=[True] * len(prompts))
        return np.asarray(out, dtype=np.float32)  # (B, H, W, 3)

    def _generate(self, prompts, seeds, subjects, steps, guidance, negative_prompt, size) -> torch.Tensor:
        """The denoising loop -> decoded images (B, 3, H, W) in [-1, 1]."""
        pipe, device = self.pipe, self.pipe._execution_device
        size = size or int(pipe.unet.config.sample_size) * int(pipe.vae_scale_factor)
        do_cfg = guidance > 1.0  # diffusers' rule
        negatives = [negative_prompt] * len(prompts) if isinstance(negative_prompt, str) else None
        text, neg_text = pipe.encode_prompt(prompts, device, 1, do_cfg, negatives)  # (B, L, D) x2
        context = torch.cat([neg_text, text]) if do_cfg else text  # (2B or B, L, D): uncond first
        pipe.scheduler.set_timesteps(steps, device=device)
        timesteps = pipe.scheduler.timesteps
        generators = [torch.Generator().manual_seed(s) for s in seeds]  # per image: the per-image noise
        latents = pipe.prepare_latents(len(prompts), pipe.unet.config.in_channels, size, size, text.dtype,
                                       device, generators)  # (B, C, h, w)
        extra = pipe.prepare_extra_step_kwargs(generators, 0.0)
        step_sizes = self.cfg.scale_factor * np.sqrt(np.linspace(1.0, 0.5, len(timesteps)))  # (T,)
        for i, t in enumerate(timesteps):
            threshold = self.thresholds.get(i)
            if threshold is not None:
                self.refinements[i] = [0] * len(prompts)
            if i < self.max_iter or threshold is not None:  # other steps: diffusers' loss is never used
                with torch.enable_grad():
                    latents = self._excite(latents, t, text, subjects, float(step_sizes[i]), threshold,
                                           update=i < self.max_iter, counts=self.refinements.get(i))
            model_in = torch.cat([latents] * 2) if do_cfg else latents  # (2B or B, C, h, w)
            model_in = pipe.scheduler.scale_model_input(model_in, t)
            eps = pipe.unet(model_in, t, encoder_hidden_states=context).sample  # (2B or B, C, h, w)
            if do_cfg:
                uncond, cond = eps.chunk(2)  # (B, C, h, w) x2
                eps = uncond + guidance * (cond - uncond)
            latents = pipe.scheduler.step(eps, t, latents, **extra).prev_sample  # (B, C, h, w)
        return pipe.vae.decode(latents / pipe.vae.config.scaling_factor, return_dict=False)[0]

    def _losses(self, latents: torch.Tensor, t, text: torch.Tensor, subjects: list[Subject]):
        """Per-sample A&E losses (A,) of ``latents`` (A, C, h, w) and their gradients (A, C, h, w).

        The excite forward gets the raw latent (no ``scale_model_input``) and the prompt only (no CFG), as in
        diffusers."""
        x = latents.detach().requires_grad_(True)  # (A, C, h, w)
        self.pipe.unet(x, t, encoder_hidden_states=text)  # fills the attention store
        maps = per_sample_maps(self.pipe.attention_store, len(x), self.res)  # (A, r, r, L)
        cfg = self.cfg
        losses = torch.stack([
            excite_loss(attention_maxima(maps[a], s.indices, s.n_tokens, cfg.temperature, cfg.sigma,
                                         cfg.kernel_size))
            for a, s in enumerate(subjects)])  # (A,)
        # samples are independent in the U-Net: d(sum)/dx row a = d(loss_a)/dx_a
        (grad,) = torch.autograd.grad(losses.sum(), [x])
        return losses.detach(), grad

    @staticmethod
    def _step(latents: torch.Tensor, losses: torch.Tensor, grad: torch.Tensor, step: float) -> torch.Tensor:
        """latents - step * grad for the rows whose loss is not 0 (diffusers skips an update at loss 0)."""
        moved = latents - step * grad  # (A, C, h, w)
        return torch.where((losses != 0)[:, None, None, None], moved, latents)

    def _excite(self, latents, t, text, subjects, step: float, threshold: float | None, update: bool,
                counts: list[int] | None):
        """One denoising step's latent updates (refinement first when ``threshold`` is set) -> (B, C, h, w).

        ``counts`` (B,) receives each sample's number of refinement updates."""
        losses, grad = self._losses(latents, t, text, subjects)  # (B,), (B, C, h, w)
        if threshold is not None:
            target = max(0.0, 1.0 - threshold)
            rows = (losses > target).nonzero()[:, 0]  # (R,): diffusers refines only the samples above the target
            if len(rows):
                refined = [subjects[r] for r in rows.tolist()]
                latents = latents.detach().clone()
                latents[rows] = self._refine(latents[rows], t, text[rows], refined, step, target, losses[rows],
                                             grad[rows], rows.tolist(), counts)
                if update:  # diffusers re-evaluates the loss at the refined latent before the regular update
                    losses, grad = losses.clone(), grad.clone()
                    losses[rows], grad[rows] = self._losses(latents[rows], t, text[rows], refined)
        return self._step(latents, losses, grad, step).detach() if update else latents.detach()

    def _refine(self, latents, t, text, subjects, step, target, losses, grad, ids, counts) -> torch.Tensor:
        """Iterative refinement of samples all above ``target`` -> their latents (R, C, h, w).

        Per sample, as diffusers' loop: update with the loss just computed, then stop when that loss was
        already <= target or the cap on updates is reached; the others continue with a fresh loss."""
        cap = self.cfg.max_refinement_steps
        active = torch.arange(len(latents))  # rows of ``latents`` still refining
        iteration = 0
        while True:
            latents[active] = self._step(latents[active], losses, grad, step)
            iteration += 1
            for a in active.tolist():
                counts[ids[a]] = iteration  # ``ids``: the refined rows' positions in the batch
            # diffusers checks the loss from BEFORE this update, so one update always follows reaching target
            active = active[(losses > target) & (iteration < cap)]
            if not len(active):
                return latents
            losses, grad = self._losses(latents[active], t, text[active], [subjects[a] for a in active.tolist()])
