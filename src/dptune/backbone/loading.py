"""Resolve and load Stable Diffusion checkpoints: a local diffusers folder, a hub id, or a shipped model.

Failing fast matters: diffusers retries the hub for about a minute when a local path is mistyped. We decide
up front whether a name is a local folder, a hub id, or a shipped alias, and say exactly what is missing.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelNotFoundError(FileNotFoundError):
    """The checkpoint cannot be found locally and cannot (or may not) be fetched."""


def shipped_models() -> dict[str, Path]:
    """Aliases of the models the registered worlds ship (e.g. 'shapesworld') -> their folders."""
    from dptune.plugins import shipped_models as registered

    return registered()


def _shipped_hint() -> str:
    names = sorted(shipped_models())
    return f"a shipped model ({', '.join(repr(n) for n in names)})" if names else "a shipped model alias"


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def resolve_model(name_or_path: str | os.PathLike) -> tuple[str, bool]:
    """Return ``(source, is_local)`` for a model name; raise :class:`ModelNotFoundError` when it can't be.

    ``source`` is a folder path when local, a hub id otherwise.
    """
    name = str(name_or_path)
    if not name.strip():
        raise ModelNotFoundError(f"empty model name; pass a diffusers folder, a hub id, or {_shipped_hint()}")
    shipped = shipped_models()
    if name in shipped:
        path = shipped[name]
        if not (path / "model_index.json").is_file():
            raise ModelNotFoundError(f"the shipped model '{name}' is missing at {path}; {_rebuild_hint(name)}")
        return str(path), True
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "model_index.json").is_file():
            raise ModelNotFoundError(
                f"{path} exists but is not a diffusers pipeline folder (no model_index.json); point to the "
                "folder that holds model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/"
            )
        return str(path), True
    first = name.split("/", 1)[0]
    looks_local = name.startswith((".", "/", "~")) or "\\" in name or Path(first).is_dir()
    if looks_local or not _HUB_ID.match(name):
        raise ModelNotFoundError(
            f"model folder {name} does not exist; check the path, or pass a hub id like "
            f"'stabilityai/stable-diffusion-2-1-base' or {_shipped_hint()}"
        )
    return name, False


def _rebuild_hint(alias: str) -> str:
    from dptune.plugins import world_of_model

    world = world_of_model(alias)
    hint = world.model_hints.get(alias) if world is not None else None
    return f"re-clone the repository or rebuild it: {hint}" if hint else "re-clone the repository"


def load_pipeline(name_or_path: str | os.PathLike, dtype=None, device: str | None = None):
    """Load a ``StableDiffusionPipeline`` (no safety checker) from a folder, hub id, shipped alias, or
    ``tiny-random`` (random tiny components, no download)."""
    import torch
    from diffusers import StableDiffusionPipeline

    if str(name_or_path) == "tiny-random":  # untrained tiny SD for smoke runs and tests
        from dptune.backbone.tiny import tiny_components

        pipe = StableDiffusionPipeline(**tiny_components(), safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        pipe = pipe.to(dtype=dtype) if dtype not in (None, torch.float32) else pipe
        return pipe.to(device) if device else pipe
    source, is_local = resolve_model(name_or_path)
    kwargs = dict(
        dtype=dtype or torch.float32,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    try:
        if is_local:
            pipe = StableDiffusionPipeline.from_pretrained(source, local_files_only=True, **kwargs)
        else:
            pipe = _load_from_hub(source, kwargs)
    except ModelNotFoundError:
        raise
    except (OSError, ValueError) as e:
        raise ModelNotFoundError(f"could not load a Stable Diffusion pipeline from {source}: {e}") from e
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device) if device else pipe


def _load_from_hub(hub_id: str, kwargs: dict):
    from diffusers import StableDiffusionPipeline

    try:  # the local HF cache first: no network, no retries
        return StableDiffusionPipeline.from_pretrained(hub_id, local_files_only=True, **kwargs)
    except (OSError, ValueError) as cached_err:
        if hub_offline():
            raise ModelNotFoundError(
                f"'{hub_id}' is not in the local Hugging Face cache and HF_HUB_OFFLINE is set; download it on "
                f"a machine with network (`hf download {hub_id}`) or pass a local folder"
            ) from cached_err
    try:
        return StableDiffusionPipeline.from_pretrained(hub_id, **kwargs)
    except (OSError, ValueError) as e:
        raise ModelNotFoundError(
            f"could not download '{hub_id}' from the Hugging Face hub ({type(e).__name__}: {e}); check the id "
            "and your network, or download it elsewhere and pass the local folder"
        ) from e
