"""VAE latents computed once and stored as sharded safetensors + a JSON index (``dptune data cache-latents``).

Layout of a cache folder::

    index.json                      {"format": "dptune-latent-cache", "version": 1, "image_size": 512,
                                     "scaling_factor": ..., "shift_factor": ..., "vae": "...",
                                     "latent_shape": [4, 64, 64], "shard_size": 256, "complete": true,
                                     "shards": [{"file": "latents_00000.safetensors", "keys": ["9", ...]}]}
    latents_00000.safetensors       tensor "latents": (n, 4, h, w) float32, already multiplied by the VAE's
                                    ``config.scaling_factor`` (so it is the U-Net's input space)

Keys are COCO image ids as strings. We store the mean of the VAE posterior (deterministic, so a resumed
run gives bit-identical shards); the official DPT code likewise trains from fixed precomputed latents.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import torch

from dptune.data.configs import LatentCacheConfig
from dptune.data.formats import DataFormatError, check_format, read_json
from dptune.data.images import load_image_tensor
from dptune.utils.io import load_tensors, save_json, save_tensors

LATENT_FORMAT = "dptune-latent-cache"
LATENT_VERSION = 1
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def load_vae(path: str | Path, device: str = "cpu", dtype: str = "float32"):
    """``AutoencoderKL`` from a local VAE folder or a full SD folder (its ``vae/`` subfolder)."""
    from diffusers import AutoencoderKL

    path = Path(path)
    if (path / "vae" / "config.json").is_file():
        vae = AutoencoderKL.from_pretrained(path, subfolder="vae", local_files_only=True)
    elif (path / "config.json").is_file():
        vae = AutoencoderKL.from_pretrained(path, local_files_only=True)
    else:
        raise FileNotFoundError(f"no VAE at {path}: expected config.json there or in {path}/vae; pass a local "
                                f"Stable Diffusion folder or its vae/ folder (dptune never downloads models)")
    return vae.to(device=device, dtype=_DTYPES[dtype]).eval()


def vae_encoder(vae) -> Callable[[torch.Tensor], torch.Tensor]:
    """images (B, 3, H, W) in [-1, 1] -> latents (B, C, H/8, W/8) scaled by ``vae.config.scaling_factor``."""
    scale = float(vae.config.scaling_factor)
    shift = float(getattr(vae.config, "shift_factor", None) or 0.0)  # None for SD 1.x/2.x VAEs
    param = next(vae.parameters())

    @torch.no_grad()
    def encode(images: torch.Tensor) -> torch.Tensor:
        z = vae.encode(images.to(device=param.device, dtype=param.dtype)).latent_dist.mean  # (B, C, h, w)
        return ((z - shift) * scale).float().cpu()

    return encode


def vae_meta(vae, name: str) -> dict:
    return {"vae": name, "scaling_factor": float(vae.config.scaling_factor),
            "shift_factor": float(getattr(vae.config, "shift_factor", None) or 0.0)}


def _plan(items: list[tuple[str, Path]], cfg: LatentCacheConfig, meta: dict) -> dict:
    keys = [k for k, _ in items]
    shards = [{"file": f"latents_{s:05d}.safetensors", "keys": keys[s * cfg.shard_size:(s + 1) * cfg.shard_size]}
              for s in range(math.ceil(len(keys) / cfg.shard_size))]
    return {"format": LATENT_FORMAT, "version": LATENT_VERSION, "image_size": cfg.image_size,
            "shard_size": cfg.shard_size, **meta, "shards": shards}


def _check_resume(index_path: Path, plan: dict) -> None:
    old = read_json(index_path, "latent cache index", "delete the folder to start afresh")
    old_plan = {k: v for k, v in old.items() if k not in ("complete", "latent_shape")}
    if old_plan != plan:
        diff = sorted(k for k in set(old_plan) | set(plan) if old_plan.get(k) != plan.get(k))
        raise ValueError(f"{index_path.parent} holds a latent cache with different {diff}; pass another "
                         f"--out folder (or delete it) to cache with these settings")


def cache_latents(items: list[tuple[str, Path]], encode: Callable[[torch.Tensor], torch.Tensor],
                  out_dir: str | Path, cfg: LatentCacheConfig | None = None, meta: dict | None = None,
                  progress: bool = True) -> dict:
    """Encode every ``(key, image_path)`` once into ``out_dir``; finished shards are skipped on re-runs."""
    from tqdm import tqdm

    cfg = cfg or LatentCacheConfig()
    if not items:
        raise ValueError("no images to cache; check the captions/refs files passed")
    if len({k for k, _ in items}) != len(items):
        raise ValueError("duplicate image keys in the list to cache; each image must appear once")
    out, paths = Path(out_dir), dict(items)
    plan = _plan(items, cfg, meta or {})
    index_path = out / "index.json"
    if index_path.is_file():
        _check_resume(index_path, plan)
    else:
        save_json(index_path, {**plan, "complete": False})
    todo = [s for s in plan["shards"] if not (out / s["file"]).is_file()]
    shape = None
    with tqdm(total=len(items), initial=len(items) - sum(len(s["keys"]) for s in todo), desc="cache latents",
              unit="img", disable=not progress) as bar:
        for shard in todo:
            parts = []
            for a in range(0, len(shard["keys"]), cfg.batch_size):
                keys = shard["keys"][a:a + cfg.batch_size]
                batch = torch.stack([load_image_tensor(paths[k], cfg.image_size, f"image {k}") for k in keys])
                parts.append(encode(batch))  # (b, C, h, w)
                bar.update(len(keys))
            latents = torch.cat(parts)  # (n, C, h, w)
            save_tensors(out / shard["file"], {"latents": latents}, metadata={"keys": json.dumps(shard["keys"])})
            shape = list(latents.shape[1:])
    if shape is None:  # everything was already cached: read the shape from the first shard
        shape = list(load_tensors(out / plan["shards"][0]["file"])["latents"].shape[1:])
    save_json(index_path, {**plan, "complete": True, "latent_shape": shape})
    return {"out": str(out), "images": len(items), "shards": len(plan["shards"]), "encoded_shards": len(todo),
            "latent_shape": shape}


class LatentCache:
    """Read-only view of a finished cache folder: ``cache[key] -> (C, h, w)`` latents (scaled)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        fix = "create it with `dptune data cache-latents`"
        index = check_format(read_json(self.folder / "index.json", "latent cache index", fix), self.folder,
                             LATENT_FORMAT, LATENT_VERSION, fix)
        if not index.get("complete"):
            raise DataFormatError(f"latent cache {self.folder} is unfinished; re-run the same "
                                  f"`dptune data cache-latents` command to complete it")
        self.image_size = int(index["image_size"])
        self.scaling_factor = float(index["scaling_factor"]) if "scaling_factor" in index else None
        self.latent_shape = tuple(index["latent_shape"])
        self._where = {k: (s["file"], row) for s in index["shards"] for row, k in enumerate(s["keys"])}

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, key: object) -> bool:
        return str(key) in self._where

    def keys(self) -> list[str]:
        return list(self._where)

    def __getitem__(self, key: str | int) -> torch.Tensor:
        from safetensors import safe_open

        if str(key) not in self._where:
            raise KeyError(f"image {key} is not in latent cache {self.folder}; re-run cache-latents over it")
        file, row = self._where[str(key)]
        with safe_open(str(self.folder / file), framework="pt") as f:  # reads one row, not the whole shard
            return f.get_slice("latents")[row]  # (C, h, w)
