"""DCT's training-time sampler: full classifier-free-guidance DDIM sampling from fresh noise, differentiable
through the last ``grad_steps`` steps only (earlier steps run under ``no_grad``, so memory does not grow with
the number of steps), then a differentiable VAE decode.

The final-step pitfall: with DDIM, ``set_alpha_to_one=False`` and a last timestep of 0 (``steps_offset=0``),
the last update maps x_0 -> x_0 exactly (alpha_prev = alpha_t), so the image does not depend on the last U-Net
call and a token trained through that step alone gets zero gradient. ``decode="x0"`` (the default) decodes the
last step's x0 prediction instead of its output sample, which always depends on the noise prediction;
:func:`check_gradient_path` refuses the one configuration that cannot learn.
"""

from __future__ import annotations

import torch

DECODES = ("x0", "sample")


def ddim_for(backbone, steps: int):
    """A DDIM scheduler with the backbone's schedule, set to ``steps`` inference steps."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(backbone.scheduler.config)
    scheduler.set_timesteps(steps)
    return scheduler


def last_step_is_identity(scheduler) -> bool:
    """Whether the scheduler's final update returns its input unchanged (DDIM with alpha_prev == alpha_t)."""
    t = int(scheduler.timesteps[-1])
    stride = scheduler.config.num_train_timesteps // scheduler.num_inference_steps
    prev = t - stride
    alphas = scheduler.alphas_cumprod
    alpha_prev = alphas[prev] if prev >= 0 else scheduler.final_alpha_cumprod
    return bool(torch.equal(torch.as_tensor(alpha_prev), torch.as_tensor(alphas[t])))


def check_gradient_path(scheduler, grad_steps: int, decode: str) -> None:
    """One clear error for the setting in which the token would get no gradient at all."""
    if decode not in DECODES:
        raise ValueError(f"decode must be one of {DECODES}, got {decode!r}")
    if decode == "sample" and grad_steps == 1 and last_step_is_identity(scheduler):
        raise ValueError("the last DDIM step is the identity here (final timestep 0, set_alpha_to_one=False), so "
                         "differentiating only through it gives the token zero gradient: use decode=x0 (default), "
                         "grad_steps >= 2, or a scheduler with steps_offset=1")


def _guided_eps(unet, x: torch.Tensor, t, context: torch.Tensor, guidance: float) -> torch.Tensor:
    """CFG noise prediction; ``context`` = cat([uncond, cond]) (2B, L, D)."""
    eps = unet(torch.cat([x, x]), t, encoder_hidden_states=context).sample  # (2B, C, h, w)
    uncond, cond = eps.chunk(2)
    return uncond + guidance * (cond - uncond)  # (B, C, h, w)


def sample_latents(backbone, scheduler, cond: torch.Tensor, uncond: torch.Tensor, noise: torch.Tensor,
                   guidance: float, grad_steps: int, decode: str = "x0") -> torch.Tensor:
    """Run every step of ``scheduler`` (already ``set_timesteps``) from ``noise`` (B, C, h, w); returns the final
    latents (B, C, h, w), differentiable w.r.t. ``cond`` (B, L, D) through the last ``grad_steps`` steps."""
    timesteps = scheduler.timesteps
    n = len(timesteps)
    if not 1 <= grad_steps <= n:
        raise ValueError(f"grad_steps must be in 1..{n} (the sampling steps), got {grad_steps}")
    unet = backbone.unet
    x = noise.to(device=unet.device, dtype=unet.dtype) * scheduler.init_noise_sigma
    context = torch.cat([uncond, cond]).to(unet.dtype)  # (2B, L, D)
    for i, t in enumerate(timesteps):
        tracked = i >= n - grad_steps
        with torch.set_grad_enabled(tracked and torch.is_grad_enabled()):
            ctx = context if tracked else context.detach()
            xin = scheduler.scale_model_input(x, t)
            eps = _guided_eps(unet, xin, t, ctx, guidance)
            out = scheduler.step(eps, t, x)
            x = out.pred_original_sample if (i == n - 1 and decode == "x0") else out.prev_sample
    return x


def decode_unit(backbone, latents: torch.Tensor) -> torch.Tensor:
    """Latents (B, C, h, w) -> images (B, 3, H, W) in [0, 1], differentiable (the classifier's input range)."""
    return (backbone.decode_latents(latents).float() + 1) / 2
