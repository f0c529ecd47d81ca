"""Load a stage-2 LoRA folder (diffusers format) into a Stable Diffusion pipeline, with clear errors."""

from __future__ import annotations

import os
from pathlib import Path


def existing_dir(path: str | os.PathLike, what: str, fix: str) -> Path:
    path = Path(path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{what} directory {path} does not exist; {fix}")
    return path


def load_lora_into(pipe, lora_dir: str | os.PathLike) -> None:
    """Load a stage-2 ``lora/`` folder (U-Net LoRA, plus the text-encoder LoRA if it was tuned) into ``pipe``,
    with a clear error when it is not one. A U-Net-only folder also loads with ``pipe.load_lora_weights``."""
    path = existing_dir(lora_dir, "LoRA", "pass the lora/ folder of a `dptune tune` checkpoint")
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
