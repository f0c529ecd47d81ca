"""``DPTPipeline``: Stable Diffusion text-to-image with optional DPT self-correction (paper Sec. 3.3).

>>> pipe = DPTPipeline.from_pretrained("shapesworld", adapter="runs/probe/final/adapter")
>>> images = pipe(["two red circles"], seeds=[0], correction=SelfCorrectionConfig(eta=0.5))  # (1, H, W, 3)

The denoising loop is scheduler-agnostic: ``scale_model_input`` -> denoiser -> ``scheduler.step`` from the
latent the denoiser returns (z_hat_t in paper mode, see :mod:`dptune.sampling.denoiser`). Text encoding,
initial noise, step kwargs, VAE decoding and post-processing are the wrapped diffusers pipeline's own methods,
so with ``eta = 0`` (or no correction) the output equals ``StableDiffusionPipeline`` bit for bit.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm

from dptune.adapter import DPTProbe, load_adapter
from dptune.backbone import SDBackbone
from dptune.sampling.config import SelfCorrectionConfig
from dptune.sampling.correction import SelfCorrector
from dptune.sampling.denoiser import CFGDenoiser, Conditioning, SelfCorrectingDenoiser
from dptune.sampling.grounded import GroundingTargets
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


def _existing_dir(path: str | os.PathLike, what: str, fix: str) -> Path:
    path = Path(path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{what} directory {path} does not exist; {fix}")
    return path


def load_lora_into(pipe, lora_dir: str | os.PathLike) -> None:
    """Load a stage-2 ``lora/`` folder (U-Net LoRA, plus the text-encoder LoRA if it was tuned) into ``pipe``,
    with a clear error when it is not one. A U-Net-only folder also loads with ``pipe.load_lora_weights``."""
    path = _existing_dir(lora_dir, "LoRA", "pass the lora/ folder of a `dptune tune` checkpoint")
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(
            f"LoRA directory {path} holds no .safetensors file; pass the lora/ folder of a `dptune tune` "
            "checkpoint (pytorch_lora_weights.safetensors)"
        )
    from dptune.utils.io import load_tensors

    state = load_tensors(files[0])
    unet_part = {k: v for k, v in state.items() if k.startswith("unet.")}
    te_part = {k[len("text_encoder."):]: v for k, v in state.items() if k.startswith("text_encoder.")}
    if not unet_part and not te_part:
        raise ValueError(f"{files[0]} holds no unet.* or text_encoder.* LoRA keys; it is not a diffusers LoRA file")
    if unet_part:  # the U-Net's own loader: the pipeline's would also look for (and warn about) text keys
        pipe.unet.load_lora_adapter(unet_part, prefix="unet")
    if te_part:
        _load_text_encoder_lora(pipe.text_encoder, te_part)


def _load_text_encoder_lora(text_encoder, state: dict) -> None:
    """Text-encoder LoRA (diffusers/peft keys, alpha = rank) via peft directly.

    ``pipe.load_lora_weights`` would route this through transformers' adapter integration, which refuses
    peft < 0.22 (newer than the newest peft release when this was written); peft itself loads it fine.
    """
    from diffusers.utils import convert_state_dict_to_peft
    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict

    state = convert_state_dict_to_peft(state)  # diffusers' "lora_linear_layer.down" -> peft's "lora_A"
    ranks = {v.shape[0] for k, v in state.items() if "lora_A" in k}
    if len(ranks) != 1:
        raise ValueError(f"text-encoder LoRA has lora_A tensors of ranks {sorted(ranks)}; expected one rank")
    rank = ranks.pop()
    targets = sorted({k.split(".lora_")[0].rsplit(".", 1)[-1] for k in state})  # e.g. q_proj, v_proj
    inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=rank, target_modules=targets), text_encoder)
    result = set_peft_model_state_dict(text_encoder, state)
    if getattr(result, "unexpected_keys", None):
        raise ValueError(f"text-encoder LoRA keys do not fit this text encoder (e.g. {result.unexpected_keys[0]}); "
                         "use the LoRA with the model it was trained on")


def load_probe(
    pipe, adapter_dir: str | os.PathLike, blocks: Sequence[str] = ("mid",), fuse: str = "sum"
) -> DPTProbe:
    """U-Net of ``pipe`` + the adapter saved in ``adapter_dir`` (checked against the probed block's width)."""
    path = _existing_dir(
        adapter_dir,
        "adapter",
        "pass the folder written by save_adapter / a checkpoint's "
        "adapter/ folder (it holds adapter_config.json and adapter.safetensors)",
    )
    backbone = SDBackbone.from_pipeline(pipe)
    adapter = load_adapter(
        path,
        expect_in_channels=DPTProbe.feature_channels(backbone, list(blocks), fuse),
        expect_text_dim=backbone.text_dim,
        device=pipe.device,
    )
    adapter.eval().requires_grad_(False)
    return DPTProbe(backbone, adapter, blocks=blocks, fuse=fuse)


class DPTPipeline:
    """Text-to-image with optional self-correction; wraps (shares) a diffusers ``StableDiffusionPipeline``."""

    def __init__(self, sd_pipe, probe: DPTProbe | None = None) -> None:
        if probe is not None and probe.unet is not sd_pipe.unet:
            raise ValueError(
                "the probe must be built on this pipeline's U-Net (DPTProbe(SDBackbone.from_pipeline"
                "(sd_pipe), adapter)); otherwise the gradient would come from another model"
            )
        self.pipe = sd_pipe
        self.probe = probe
        self._base_scheduler_config = sd_pipe.scheduler.config
        self.last_trace: list[dict] = []  # per corrected step of the last call: timestep, score, grad RMS

    @classmethod
    def from_pretrained(
        cls,
        model: str | os.PathLike,
        adapter: str | os.PathLike | None = None,
        lora: str | os.PathLike | None = None,
        blocks: Sequence[str] = ("mid",),
        fuse: str = "sum",
        device: str | torch.device | None = None,
        dtype=None,
        scheduler: str | None = None,
    ) -> DPTPipeline:
        """Load SD ``model``, optionally a stage-2 LoRA folder and a discriminative adapter folder."""
        if adapter is not None:  # fail before loading a large model
            _existing_dir(adapter, "adapter", "pass the folder written by save_adapter (adapter_config.json)")
        if lora is not None:
            _existing_dir(lora, "LoRA", "pass the lora/ folder of a `dptune tune` checkpoint")
        pipe = load_sd_pipeline(model, device=device, dtype=parse_dtype(dtype))
        for module in (pipe.unet, pipe.vae, pipe.text_encoder):
            module.requires_grad_(False)  # inference only; the correction differentiates w.r.t. latents
        if lora is not None:
            load_lora_into(pipe, lora)
        probe = load_probe(pipe, adapter, blocks, fuse) if adapter is not None else None
        out = cls(pipe, probe)
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

    def set_scheduler(self, name: str) -> DPTPipeline:
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
        height: int | None = None,
        width: int | None = None,
        output_type: str = "np",
        progress: bool = True,
        batch_size: int | None = None,
    ):
        """Generate one image per prompt; image i depends only on (prompts[i], seeds[i]) and the settings.

        ``seeds`` default to 0..B-1. Returns np float (B, H, W, 3) in [0, 1] (``np``), a list of PIL images
        (``pil``) or a (B, 3, H, W) tensor in [0, 1] (``pt``). ``batch_size`` splits long lists.
        """
        prompts, seeds, negatives = self._check_call(
            prompts, seeds, negative_prompt, correction, output_type, num_inference_steps
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
                    height,
                    width,
                    progress,
                )
            )
        image = torch.cat(decoded)  # (B, 3, H, W) in [-1, 1]
        return self.pipe.image_processor.postprocess(
            image, output_type=output_type, do_denormalize=[True] * image.shape[0]
        )

    def _check_call(self, prompts, seeds, negative_prompt, correction, output_type, steps):
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
        if correction is not None and correction.enabled and self.probe is None:
            raise ValueError(
                "self-correction (eta > 0) needs a discriminative adapter; load one with "
                "DPTPipeline.from_pretrained(model, adapter=DIR) or pass probe=DPTProbe(...)"
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
    def _generate(self, prompts, seeds, negatives, steps, guidance, correction, height, width, progress):
        """One batch -> decoded images (b, 3, H, W) in [-1, 1]."""
        pipe, device = self.pipe, self.device
        denoiser = CFGDenoiser(pipe.unet, pipe.scheduler, guidance)
        hidden, neg_hidden = pipe.encode_prompt(
            prompts, device, 1, denoiser.do_cfg, negatives
        )  # (b, L, D) x2
        cond = Conditioning(cond=hidden, uncond=neg_hidden if denoiser.do_cfg else None)
        pipe.scheduler.set_timesteps(steps, device=device)
        timesteps = pipe.scheduler.timesteps
        generators = [
            torch.Generator().manual_seed(s) for s in seeds
        ]  # one per image: batch-independent noise
        latents = pipe.prepare_latents(
            len(prompts), pipe.unet.config.in_channels, height, width, hidden.dtype, device, generators
        )  # (b, 4, H/f, W/f)
        extra = pipe.prepare_extra_step_kwargs(generators, 0.0)
        corrector = None
        grounding = None
        if correction is not None and correction.objective == "grounded":
            grounding = GroundingTargets.build(self.probe, prompts)  # relation prompts of this batch
        nothing_to_ground = grounding is not None and len(grounding) == 0  # no relation prompt in this batch
        if correction is not None and correction.active_steps(len(timesteps)) and not nothing_to_ground:
            corrector = SelfCorrector(self.probe, correction, grounding)
            denoiser = SelfCorrectingDenoiser(denoiser, corrector)
            cond.text = self._score_text(prompts, hidden)
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

    def _score_text(self, prompts: list[str], hidden: torch.Tensor):
        """Text for s(z, y): the U-Net context of the conditional branch + the pooled CLIP(y)."""
        from dptune.backbone import TextEmbeddings

        pooled = self.probe.encode_text(prompts).pooled  # (b, Dp)
        return TextEmbeddings(hidden=hidden, pooled=pooled)
