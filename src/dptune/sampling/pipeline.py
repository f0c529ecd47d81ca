"""``GuidedPipeline``: Stable Diffusion text-to-image, optionally steered by a guidance objective (Eq. 9).

>>> pipe = GuidedPipeline.from_pretrained("shapesworld")
>>> images = pipe(["two red circles"], seeds=[0], correction=SelfCorrectionConfig(eta=0.5),
...               objective=my_objective)  # (1, H, W, 3); any GuidanceObjective

The denoising loop is scheduler-agnostic: ``scale_model_input`` -> denoiser -> ``scheduler.step`` from the
latent the denoiser returns (z_hat_t in paper mode, see :mod:`dptune.sampling.denoiser`). Text encoding,
initial noise, step kwargs, VAE decoding and post-processing are the wrapped diffusers pipeline's own methods,
so with ``eta = 0`` (or no correction) the output equals ``StableDiffusionPipeline`` bit for bit.
"""

from __future__ import annotations

import os

import torch
from tqdm.auto import tqdm

from dptune.sampling.config import SelfCorrectionConfig
from dptune.sampling.correction import SelfCorrector
from dptune.sampling.denoiser import CFGDenoiser, Conditioning, SelfCorrectingDenoiser
from dptune.sampling.guidance import GuidanceCond, GuidanceObjective, prepare
from dptune.sampling.schedulers import make_scheduler, scheduler_name

OUTPUT_TYPES = ("np", "pil", "pt")
DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "fp16": torch.float16,
    "float16": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
}


def parse_dtype(dtype) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if str(dtype) not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose from {sorted(DTYPES)}")
    return DTYPES[str(dtype)]


def load_sd_pipeline(model: str | os.PathLike, device=None, dtype=None):
    """A ``StableDiffusionPipeline`` from a folder / hub id / 'shapesworld' / 'tiny-random'."""
    from dptune.backbone import load_pipeline

    return load_pipeline(model, dtype=dtype, device=device)


class GuidedPipeline:
    """Text-to-image with optional gradient guidance; wraps (shares) a diffusers ``StableDiffusionPipeline``."""

    def __init__(self, sd_pipe) -> None:
        self.pipe = sd_pipe
        self._base_scheduler_config = sd_pipe.scheduler.config
        self.last_trace: list[dict] = []  # per corrected step of the last call: timestep, score, grad RMS

    @classmethod
    def from_pretrained(
        cls,
        model: str | os.PathLike,
        lora: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        dtype=None,
        scheduler: str | None = None,
    ) -> GuidedPipeline:
        """Load SD ``model`` (folder, hub id or shipped alias), optionally with a stage-2 LoRA folder."""
        from dptune.backbone.lora_loading import existing_dir, load_lora_into

        if lora is not None:  # fail before loading a large model
            existing_dir(lora, "LoRA", "pass the lora/ folder of a `dptune tune` checkpoint")
        pipe = load_sd_pipeline(model, device=device, dtype=parse_dtype(dtype))
        for module in (pipe.unet, pipe.vae, pipe.text_encoder):
            module.requires_grad_(False)  # inference only; guidance differentiates w.r.t. latents
        if lora is not None:
            load_lora_into(pipe, lora)
        out = cls(pipe)
        if scheduler is not None:
            out.set_scheduler(scheduler)
        return out

    # ---- properties / configuration ------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.pipe._execution_device

    @property
    def scheduler(self):
        return self.pipe.scheduler

    @property
    def scheduler_name(self) -> str | None:
        return scheduler_name(self.pipe.scheduler)

    @property
    def default_size(self) -> int:
        return int(self.pipe.unet.config.sample_size) * int(self.pipe.vae_scale_factor)

    def set_scheduler(self, name: str) -> GuidedPipeline:
        """Switch sampler (``ddim``, ``pndm``, ``euler``, ``dpmpp``), keeping the model's noise schedule."""
        self.pipe.scheduler = make_scheduler(name, self._base_scheduler_config)
        return self

    # ---- generation ---------------------------------------------------------------------------------
    def __call__(
        self,
        prompts: list[str],
        seeds: list[int] | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 7.5,
        negative_prompt: str | list[str] | None = None,
        correction: SelfCorrectionConfig | None = None,
        objective: GuidanceObjective | None = None,
        height: int | None = None,
        width: int | None = None,
        output_type: str = "np",
        progress: bool = True,
        batch_size: int | None = None,
    ):
        """Generate one image per prompt; image i depends only on (prompts[i], seeds[i]) and the settings.

        With ``correction`` (eta > 0) the latent climbs ``objective``'s score at the corrected steps (Eq. 9).

        ``seeds`` default to 0..B-1. Returns np float (B, H, W, 3) in [0, 1] (``np``), a list of PIL images
        (``pil``) or a (B, 3, H, W) tensor in [0, 1] (``pt``). ``batch_size`` splits long lists.
        """
        prompts, seeds, negatives = self._check_call(
            prompts, seeds, negative_prompt, correction, objective, output_type, num_inference_steps
        )
        height, width = self._check_size(height, width)
        step = batch_size or len(prompts)
        decoded, self.last_trace = [], []
        for lo in range(0, len(prompts), step):
            sl = slice(lo, lo + step)
            decoded.append(
                self._generate(
                    prompts[sl],
                    seeds[sl],
                    negatives and negatives[sl],
                    num_inference_steps,
                    guidance_scale,
                    correction,
                    objective,
                    height,
                    width,
                    progress,
                )
            )
        image = torch.cat(decoded)  # (B, 3, H, W) in [-1, 1]
        return self.pipe.image_processor.postprocess(
            image, output_type=output_type, do_denormalize=[True] * image.shape[0]
        )

    def _check_call(self, prompts, seeds, negative_prompt, correction, objective, output_type, steps):
        if isinstance(prompts, str):
            prompts = [prompts]
        prompts = list(prompts)
        if not prompts or any(not isinstance(p, str) or not p.strip() for p in prompts):
            raise ValueError("prompts must be a non-empty list of non-empty strings")
        seeds = list(range(len(prompts))) if seeds is None else [int(s) for s in seeds]
        if len(seeds) != len(prompts):
            raise ValueError(f"got {len(seeds)} seeds for {len(prompts)} prompts; pass one seed per prompt")
        negatives = [negative_prompt] * len(prompts) if isinstance(negative_prompt, str) else negative_prompt
        if negatives is not None and len(negatives) != len(prompts):
            raise ValueError(
                f"got {len(negatives)} negative prompts for {len(prompts)} prompts; pass one or a str"
            )
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}; got {output_type!r}")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"num_inference_steps must be an integer >= 1; got {steps!r}")
        if correction is not None and correction.enabled and objective is None:
            raise ValueError(
                "self-correction (eta > 0) needs an objective to climb: pass objective=... (e.g. DPT's "
                "matching score, dptune.methods.dpt.MatchScore)"
            )
        if self.pipe.unet.config.time_cond_proj_dim is not None:
            raise ValueError("guidance-distilled U-Nets (time_cond_proj_dim set, e.g. LCM) are not supported")
        return prompts, seeds, negatives

    def _check_size(self, height, width) -> tuple[int, int]:
        height, width = height or self.default_size, width or self.default_size
        factor = int(self.pipe.vae_scale_factor)
        if height % factor or width % factor:
            raise ValueError(
                f"height and width must be multiples of {factor} (the VAE factor); got {height}x{width}"
            )
        return height, width

    @torch.no_grad()
    def _generate(self, prompts, seeds, negatives, steps, guidance, correction, objective, height, width,
                  progress):
        """One batch -> decoded images (b, 3, H, W) in [-1, 1]."""
        pipe, device = self.pipe, self.device
        denoiser = CFGDenoiser(pipe.unet, pipe.scheduler, guidance)
        hidden, neg_hidden = pipe.encode_prompt(prompts, device, 1, denoiser.do_cfg, negatives)  # (b, L, D) x2
        cond = Conditioning(cond=hidden, uncond=neg_hidden if denoiser.do_cfg else None)
        pipe.scheduler.set_timesteps(steps, device=device)
        timesteps = pipe.scheduler.timesteps
        generators = [torch.Generator().manual_seed(s) for s in seeds]  # one per image: batch-independent noise
        latents = pipe.prepare_latents(
            len(prompts), pipe.unet.config.in_channels, height, width, hidden.dtype, device, generators
        )  # (b, 4, H/f, W/f)
        extra = pipe.prepare_extra_step_kwargs(generators, 0.0)
        corrector = None
        if correction is not None and correction.active_steps(len(timesteps)):
            cond.guidance = prepare(objective, GuidanceCond(prompts=list(prompts), hidden=hidden))
        if cond.guidance is not None:  # None: the objective has nothing to correct in this batch
            corrector = SelfCorrector(objective, correction, half=pipe.unet.dtype == torch.float16)
            denoiser = SelfCorrectingDenoiser(denoiser, corrector)
            latents = latents.float()  # fp32 trajectory: small eta * grad moves survive on fp16 models
        for i, t in enumerate(tqdm(timesteps, desc="denoising", disable=not progress, leave=False)):
            eps, base = denoiser.step(latents, t, i, len(timesteps), cond)
            latents = pipe.scheduler.step(eps.to(base.dtype), t, base, **extra, return_dict=False)[0]
        if corrector is not None:
            self.last_trace += [vars(r) | {"seeds": seeds} for r in corrector.history]
        vae = pipe.vae
        return vae.decode(
            latents.to(vae.dtype) / vae.config.scaling_factor, return_dict=False, generator=generators
        )[0]
