"""Typed configs of the data commands (torch-free, so the CLI can show their help text without importing torch)."""

from __future__ import annotations

from dataclasses import dataclass

from dptune.utils.config import field

VAE_DTYPES = ("float32", "float16", "bfloat16")


@dataclass
class MiningConfig:
    k_captions: int = field(20, help="hard-negative captions kept per image (paper: top-20)")
    k_images: int = field(4, help="hard-negative images kept per caption (paper: top-4)")
    batch_size: int = field(64, help="texts/images per embedder forward pass")
    shard_size: int = field(4096, help="embeddings per saved shard (the unit of resume)")
    query_chunk: int = field(256, help="queries per retrieval chunk (memory: chunk x keys float32; 256 images "
                             "x 414k COCO captions is about 0.4 GB)")
    device: str = field("cpu", help="torch device for the embedder")

    def __post_init__(self) -> None:
        for name in ("k_captions", "k_images", "batch_size", "shard_size", "query_chunk"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"MiningConfig.{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class LatentCacheConfig:
    image_size: int = field(512, help="square side images are resized to before encoding (paper: 512)")
    shard_size: int = field(256, help="latents per safetensors shard (the unit of resume)")
    batch_size: int = field(8, help="images per VAE forward pass")
    device: str = field("cpu", help="torch device for the VAE")
    dtype: str = field("float32", help="VAE compute dtype: float32, float16 or bfloat16 (latents saved fp32)")

    def __post_init__(self) -> None:
        if self.image_size < 8 or self.image_size % 8:
            raise ValueError(f"image_size must be a positive multiple of 8 (the VAE downsamples by 8), "
                             f"got {self.image_size}")
        if self.shard_size < 1 or self.batch_size < 1:
            raise ValueError("shard_size and batch_size must be >= 1")
        if self.dtype not in VAE_DTYPES:
            raise ValueError(f"dtype {self.dtype!r} is not one of {list(VAE_DTYPES)}")


@dataclass
class CocoRefConfig:
    image_size: int = field(512, help="square side images are resized to, aspect not kept (paper: 512)")
    seed: int = field(0, help="base seed of the per-sample draws (steps 2-5)")
    rec_same_image: bool = field(True, help="paper B.1: the ITM image is the REC image x; False draws the "
                                            "ITM image independently from all COCO images")
    skip_missing: bool = field(False, help="drop expressions whose image is not in the captions file "
                                           "instead of raising")

    def __post_init__(self) -> None:
        if self.image_size < 8 or self.image_size % 8:
            raise ValueError(f"image_size must be a positive multiple of 8, got {self.image_size}")


@dataclass
class HNCocoConfig:
    n_negatives: int = field(3, help="negatives per item and direction (paper: 3, i.e. 4-way choice)")
    seed: int = field(0, help="seed of the positive-caption and negative draws")
    max_images: int | None = field(None, help="keep only the first N images (sorted by id); None = all")

    def __post_init__(self) -> None:
        if self.n_negatives < 1:
            raise ValueError(f"n_negatives must be >= 1, got {self.n_negatives}")
        if self.max_images is not None and self.max_images < 1:
            raise ValueError(f"max_images must be >= 1 or None, got {self.max_images}")
