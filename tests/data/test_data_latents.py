"""Latent cache: scaling factor from the VAE config, sharding, resume after a kill gives identical shards."""

from __future__ import annotations

import json

import pytest
import torch

from dptune.data.coco import load_coco_captions
from dptune.data.formats import DataFormatError
from dptune.data.images import load_image_tensor
from dptune.data.latent_cache import LatentCache, LatentCacheConfig, cache_latents, load_vae, vae_encoder, vae_meta
from dptune.utils.io import load_tensors
from fixtures_realdata import write_coco

CFG = LatentCacheConfig(image_size=16, shard_size=2, batch_size=1)


@pytest.fixture
def vae_dir(tmp_path):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8,
                        layers_per_block=1, scaling_factor=0.5)
    vae.save_pretrained(tmp_path / "sd" / "vae")
    return tmp_path / "sd"  # an SD-style folder: load_vae finds vae/


@pytest.fixture
def items(tmp_path):
    coco = load_coco_captions(write_coco(tmp_path / "coco"))
    return [(str(im.image_id), coco.image_path(im.image_id)) for im in coco.images]


def test_cache_uses_config_scaling_factor(vae_dir, items, tmp_path):
    vae = load_vae(vae_dir)
    summary = cache_latents(items, vae_encoder(vae), tmp_path / "cache", CFG, vae_meta(vae, "tiny"), progress=False)
    assert summary["shards"] == 3 and summary["latent_shape"] == [4, 8, 8]
    cache = LatentCache(tmp_path / "cache")
    assert len(cache) == 6 and "20" in cache and 20 in cache and cache.scaling_factor == 0.5
    x = load_image_tensor(items[1][1], 16)[None]  # (1, 3, 16, 16)
    with torch.no_grad():
        expected = vae.encode(x).latent_dist.mean[0] * 0.5
    assert cache["20"].shape == expected.shape == (4, 8, 8)
    assert torch.allclose(cache["20"], expected, atol=1e-6)
    assert not torch.allclose(cache["20"], expected / 0.5 * 0.18215, atol=1e-3)  # not the hard-coded constant
    with pytest.raises(KeyError, match="not in latent cache"):
        cache["999"]


def test_resume_after_kill_is_identical(vae_dir, items, tmp_path):
    vae = load_vae(vae_dir)
    encode, meta = vae_encoder(vae), vae_meta(vae, "tiny")
    cache_latents(items, encode, tmp_path / "full", CFG, meta, progress=False)
    calls = {"n": 0}

    def dying(x):
        calls["n"] += 1
        if calls["n"] > 3:  # one image per batch, two per shard: dies inside the second shard
            raise KeyboardInterrupt("simulated kill")
        return encode(x)

    with pytest.raises(KeyboardInterrupt):
        cache_latents(items, dying, tmp_path / "part", CFG, meta, progress=False)
    assert sorted(p.name for p in (tmp_path / "part").glob("*.safetensors")) == ["latents_00000.safetensors"]
    with pytest.raises(DataFormatError, match="unfinished"):
        LatentCache(tmp_path / "part")
    calls["n"] = -100
    summary = cache_latents(items, dying, tmp_path / "part", CFG, meta, progress=False)
    assert summary["encoded_shards"] == 2 and calls["n"] == -100 + 4  # shard 0 was skipped
    for name in ("latents_00000", "latents_00001", "latents_00002"):
        a = load_tensors(tmp_path / "full" / f"{name}.safetensors")["latents"]
        b = load_tensors(tmp_path / "part" / f"{name}.safetensors")["latents"]
        assert torch.equal(a, b)
    assert json.loads((tmp_path / "part" / "index.json").read_text())["complete"] is True


def test_resume_with_other_settings_is_refused(vae_dir, items, tmp_path):
    vae = load_vae(vae_dir)
    cache_latents(items[:2], vae_encoder(vae), tmp_path / "c", CFG, vae_meta(vae, "tiny"), progress=False)
    with pytest.raises(ValueError, match=r"different \['image_size'\]"):
        cache_latents(items[:2], vae_encoder(vae), tmp_path / "c", LatentCacheConfig(image_size=24, shard_size=2),
                      vae_meta(vae, "tiny"), progress=False)


def test_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="no VAE at"):
        load_vae(tmp_path)
    with pytest.raises(ValueError, match="multiple of 8"):
        LatentCacheConfig(image_size=20)
    with pytest.raises(FileNotFoundError, match="latent cache index"):
        LatentCache(tmp_path / "missing")
