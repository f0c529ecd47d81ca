"""Methods to compare ("base", "dpt", "dpt+sc", ...): what each one loads and how it generates.

A :class:`MethodSpec` names a model, an optional stage-2 LoRA, an optional discriminative adapter (needed for
self-correction and for the ITM/REC evaluation) and the self-correction strength ``eta`` (paper Eq. 9,
default 0.5 per Appendix B.3.2; 0 = off). Standard names, built from one set of paths:

=========  =====================================  =========================================
name       generation                              discriminative evaluation (ITM / REC)
=========  =====================================  =========================================
base       the model as is                         -- (no adapter)
dpt        model + LoRA                            model + LoRA + adapter
dpt+sc     model + LoRA + self-correction (eta)    same probe as ``dpt``
base+sc    model + self-correction, no LoRA        model + adapter (stage-1 probe)
=========  =====================================  =========================================

Free-form: ``NAME=key=value,key=value`` with keys model, adapter, lora, eta, blocks (``mid+up1``), fuse, and
the self-correction options window (``0:1`` = every step), mode (paper / official), normalize_grad
(true / false), objective (match / grounded) and ground_t.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dptune.utils.config import field

STANDARD = ("base", "dpt", "dpt+sc", "base+sc")
RANDOM_ADAPTER = "random"  # smoke runs only: an untrained adapter
_KEYS = ("model", "adapter", "lora", "eta", "blocks", "fuse", "window", "mode", "normalize_grad", "objective",
         "ground_t")


@dataclass
class MethodSpec:
    """One method of a comparison (see the module docstring)."""

    name: str = field(help="label in tables and grids")
    model: str = field("shapesworld", help="diffusers folder, hub id, 'shapesworld' or 'tiny-random'")
    adapter: str | None = field(None, help="adapter folder (save_adapter), or 'random' for smoke runs")
    lora: str | None = field(None, help="stage-2 LoRA folder (pytorch_lora_weights.safetensors)")
    eta: float = field(0.0, help="self-correction strength (paper Eq. 9); 0 = off")
    blocks: list[str] | None = field(
        None, help="probed blocks; default: the adapter's training config, else mid"
    )
    fuse: str | None = field(
        None, help="block fusion ('sum'/'concat'); default: the training config, else sum"
    )
    sc: dict = field(
        {}, help="extra SelfCorrectionConfig options, e.g. {'window': [0, 1], 'mode': 'official'}"
    )

    def __post_init__(self) -> None:
        if not self.name or "=" in self.name or "," in self.name:
            raise ValueError(f"method name {self.name!r} must be non-empty without '=' or ','")
        if self.eta < 0:
            raise ValueError(f"method {self.name}: eta must be >= 0, got {self.eta}")
        if self.eta > 0 and not self.adapter:
            raise ValueError(
                f"method {self.name}: self-correction (eta={self.eta}) needs an adapter; pass --adapter"
            )

    @property
    def probe_key(self) -> tuple:
        """Methods with equal keys share one probe, so their ITM/REC results are computed once."""
        return (self.model, self.adapter, self.lora, tuple(self.blocks or ()), self.fuse)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def parse_method(text: str) -> MethodSpec:
    """``NAME=key=value,key=value`` -> :class:`MethodSpec`."""
    name, sep, rest = text.partition("=")
    if not sep:
        raise ValueError(
            f"--compare {text!r}: expected NAME=key=value,... e.g. 'dpt=model=shapesworld,lora=DIR'"
        )
    kw: dict[str, Any] = {}
    sc: dict[str, Any] = {}
    for part in filter(None, rest.split(",")):
        key, sep, value = part.partition("=")
        if not sep or key not in _KEYS:
            raise ValueError(f"--compare {text!r}: bad entry {part!r}; keys: {', '.join(_KEYS)}")
        if key == "window":
            sc["window"] = tuple(float(v) for v in value.split(":"))
        elif key in ("mode", "objective"):
            sc[key] = value
        elif key == "normalize_grad":
            sc[key] = value.lower() in ("1", "true", "yes")
        elif key == "ground_t":
            sc[key] = int(value)
        else:
            kw[key] = float(value) if key == "eta" else value.split("+") if key == "blocks" else value
    return MethodSpec(name=name, sc=sc, **kw)


def default_method_names(adapter: str | None, lora: str | None) -> list[str]:
    """base, plus dpt if a LoRA is given, plus self-correction when an adapter is given."""
    names = ["base"]
    if lora:
        names.append("dpt")
    if adapter:
        names.append("dpt+sc" if lora else "base+sc")
    return names


def standard_methods(
    names: list[str],
    model: str,
    adapter: str | None,
    lora: str | None,
    eta: float = 0.5,
    sc: dict | None = None,
) -> list[MethodSpec]:
    """MethodSpecs for standard names (see the table in the module docstring); ``sc``: extra
    SelfCorrectionConfig options of the +sc methods."""
    out = []
    for n in names:
        if n not in STANDARD:
            raise ValueError(f"unknown method {n!r}; use {list(STANDARD)} or --compare NAME=SPEC")
        if n.startswith("dpt") and not (lora or adapter):
            raise ValueError(f"method {n!r} needs the DPT weights: pass --lora DIR and/or --adapter DIR")
        if n.endswith("+sc") and eta <= 0:
            raise ValueError(f"method {n!r} needs eta > 0 (self-correction strength), got {eta}")
        out.append(
            MethodSpec(
                name=n,
                model=model,
                adapter=adapter if n != "base" else None,
                lora=lora if n.startswith("dpt") else None,
                eta=eta if n.endswith("+sc") else 0.0,
                sc=dict(sc or {}) if n.endswith("+sc") else {},
            )
        )
    return out


# ---- loading -------------------------------------------------------------------------------------------
def probe_settings(spec: MethodSpec) -> tuple[list[str], str, list[str]]:
    """(blocks, fuse, notes): from the spec, else the training config next to the adapter, else mid/sum."""
    notes: list[str] = []
    blocks, fuse = spec.blocks, spec.fuse
    cfg_path = (
        Path(spec.adapter).parent / "config.json" if spec.adapter and spec.adapter != RANDOM_ADAPTER else None
    )
    if cfg_path is not None and cfg_path.is_file():
        from dptune.utils.io import load_json

        cfg = load_json(cfg_path)
        blocks = blocks or cfg.get("blocks")
        fuse = fuse or cfg.get("fuse")
        if cfg.get("model") and cfg["model"] != spec.model:
            notes.append(f"adapter was trained on model {cfg['model']!r}, evaluated on {spec.model!r}")
    return list(blocks or ["mid"]), fuse or "sum", notes


def load_backbone_for(spec: MethodSpec, device: str = "cpu"):
    """The method's backbone, LoRA loaded into its U-Net when given (frozen, eval mode)."""
    from dptune.backbone import load_backbone

    bb = load_backbone(spec.model, device=device)
    if spec.lora:
        from dptune.sampling.pipeline import load_lora_into

        load_lora_into(sd_pipeline(bb), spec.lora)
    return bb.freeze()


def load_probe_for(spec: MethodSpec, backbone):
    """A :class:`DPTProbe` for the method, or None without an adapter."""
    if not spec.adapter:
        return None
    import torch

    from dptune.adapter import AdapterConfig, DiscriminativeAdapter, DPTProbe, load_adapter

    blocks, fuse, _ = probe_settings(spec)
    channels = DPTProbe.feature_channels(backbone, blocks, fuse)
    if spec.adapter == RANDOM_ADAPTER:
        torch.manual_seed(0)
        adapter = DiscriminativeAdapter(
            AdapterConfig(
                in_channels=channels,
                text_dim=backbone.text_dim,
                d_model=64,
                heads=4,
                ffn=128,
                num_queries=30,
                num_match_queries=5,
            )
        )
    else:
        adapter = load_adapter(spec.adapter, expect_in_channels=channels, expect_text_dim=backbone.text_dim)
    probe = DPTProbe(backbone, adapter.to(backbone.device), blocks, fuse)
    probe.requires_grad_(False)
    return probe.eval()


def sd_pipeline(backbone):
    """A diffusers StableDiffusionPipeline over the backbone's modules with a DDIM sampler (paper B.3.3)."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline(
        vae=backbone.vae,
        text_encoder=backbone.text_encoder,
        tokenizer=backbone.tokenizer,
        unet=backbone.unet,
        scheduler=DDIMScheduler.from_config(backbone.scheduler.config),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _sampling_api():
    try:
        from dptune.sampling import DPTPipeline, SelfCorrectionConfig
    except ImportError:
        return None
    return DPTPipeline, SelfCorrectionConfig


def make_generator(spec: MethodSpec, backbone, probe, steps: int, guidance: float):
    """``(generate(prompts, seeds) -> (B, H, W, 3) in [0, 1], description)`` for the method.

    Uses ``dptune.sampling.DPTPipeline`` for every method when it is available (one sampling code path,
    so equal seeds mean equal initial noise across methods); otherwise plain diffusers, without
    self-correction.
    """
    import torch

    pipe = sd_pipeline(backbone)
    api = _sampling_api()
    if api is None:
        if spec.eta > 0:
            raise ValueError(
                f"method {spec.name}: self-correction needs dptune.sampling.DPTPipeline, which this "
                "checkout does not have; drop the +sc methods or update dptune"
            )

        @torch.no_grad()
        def generate(prompts: list[str], seeds: list[int]):
            gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
            return pipe(
                prompts, generator=gens, num_inference_steps=steps, guidance_scale=guidance, output_type="np"
            ).images

        return generate, "diffusers StableDiffusionPipeline (DDIM)"
    dpt_pipeline_cls, sc_config_cls = api
    dpt_pipe = dpt_pipeline_cls(pipe, probe=probe if spec.eta > 0 else None)
    correction = sc_config_cls(eta=spec.eta, **spec.sc) if spec.eta > 0 else None

    def generate(prompts: list[str], seeds: list[int]):
        return dpt_pipe(
            list(prompts),
            [int(s) for s in seeds],
            num_inference_steps=steps,
            guidance_scale=guidance,
            correction=correction,
            output_type="np",
            progress=False,
        )

    sc = f", self-correction {correction}" if correction is not None else ""
    return generate, f"dptune.sampling.DPTPipeline (DDIM{sc})"
