"""CocoRefDataset (paper App. B.1 sampling steps 1-5), its latent-cache path, and the HN-MSCOCO builder."""

from __future__ import annotations

import json

import pytest
import torch

from dptune.data.coco import load_coco_captions
from dptune.data.coco_dataset import CocoRefConfig, CocoRefDataset
from dptune.data.formats import DataFormatError
from dptune.data.hard_negatives import HardNegatives
from dptune.data.hn_coco import HNCocoConfig, build_hn_coco
from dptune.data.images import load_image_tensor
from dptune.data.interface import DPTDataset, collate_samples
from dptune.data.latent_cache import LatentCache, LatentCacheConfig, cache_latents
from dptune.data.refcoco import RefRecord, load_ref_records
from dptune.data.refer_pickle import convert_refer
from fixtures_realdata import write_coco, write_fake_negatives, write_refer


@pytest.fixture
def parts(tmp_path):
    coco = load_coco_captions(write_coco(tmp_path / "coco"))
    write_refer(tmp_path / "refer")
    convert_refer(tmp_path / "refer", tmp_path / "refs.json")
    refs = load_ref_records(tmp_path / "refs.json")
    negatives = HardNegatives.load(write_fake_negatives(coco, tmp_path / "hn.json", k_captions=4, k_images=3))
    return coco, refs, negatives


def _check_plan(ds, coco, negatives, index):
    p = ds.plan(index)
    own = {c.caption_id for c in coco.captions_of(p.image_id)}
    assert p.caption_id in own  # step 2
    assert p.hn_caption_id in negatives.captions_for(p.image_id)  # step 3
    assert p.hn_image_id in negatives.images_for(p.caption_id)  # step 4
    assert p.rand_image_id != p.image_id and p.rand_caption_id not in own  # step 5
    return p


def test_septuple_follows_paper_sampling(parts):
    coco, refs, negatives = parts
    ds = CocoRefDataset(coco, refs, negatives, CocoRefConfig(image_size=16))
    assert isinstance(ds, DPTDataset) and len(ds) == 5
    for epoch in range(8):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            p = _check_plan(ds, coco, negatives, i)
            assert p.image_id == refs[i].image_id  # step 1: ITM image x is the REC image
    s = ds[0]
    p = ds.plan(0)
    assert s.image.shape == s.hn_image.shape == s.rand_image.shape == s.ref_image.shape == (3, 16, 16)
    assert s.image.min() >= -1 and s.image.max() <= 1
    assert torch.equal(s.hn_image, load_image_tensor(coco.image_path(p.hn_image_id), 16))
    assert torch.equal(s.ref_image, s.image)
    assert s.caption == coco.caption_by_id[p.caption_id].text
    assert s.hn_caption == coco.caption_by_id[p.hn_caption_id].text
    assert s.ref_expression == "left car"
    # box [1, 2, 10, 8] in a 32x24 image -> cx = 6/32, cy = 6/24, w = 10/32, h = 8/24
    assert torch.allclose(s.ref_box, torch.tensor([6 / 32, 6 / 24, 10 / 32, 8 / 24]))
    batch = collate_samples([ds[0], ds[1]])
    assert batch["image"].shape == (2, 3, 16, 16) and batch["ref_box"].shape == (2, 4)


def test_draws_are_seeded_and_epochs_redraw(parts):
    coco, refs, negatives = parts
    a = CocoRefDataset(coco, refs, negatives, CocoRefConfig(image_size=16, seed=3))
    b = CocoRefDataset(coco, refs, negatives, CocoRefConfig(image_size=16, seed=3))
    assert [a.plan(i) for i in range(5)] == [b.plan(i) for i in range(5)]
    b.set_epoch(1)
    assert [a.plan(i) for i in range(5)] != [b.plan(i) for i in range(5)]


def test_independent_itm_image(parts):
    coco, refs, negatives = parts
    ds = CocoRefDataset(coco, refs, negatives, CocoRefConfig(image_size=16, rec_same_image=False))
    seen = set()
    for epoch in range(10):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            seen.add(_check_plan(ds, coco, negatives, i).image_id != refs[i].image_id)
    assert seen == {True, False}
    s = ds[0]
    assert torch.equal(s.ref_image, load_image_tensor(coco.image_path(refs[0].image_id), 16))


def test_latent_path_returns_cached_latents(parts, tmp_path):
    coco, refs, negatives = parts
    items = [(str(im.image_id), coco.image_path(im.image_id)) for im in coco.images]

    def encode(x):  # stand-in for the VAE: (B, 3, 16, 16) -> (B, 4, 2, 2)
        return torch.nn.functional.avg_pool2d(torch.cat([x, x[:, :1]], 1), 8)

    cache_latents(items, encode, tmp_path / "lat", LatentCacheConfig(image_size=16, shard_size=4), {},
                  progress=False)
    cache = LatentCache(tmp_path / "lat")
    ds = CocoRefDataset(coco, refs, negatives, CocoRefConfig(image_size=16), latents=cache)
    s, p = ds[2], ds.plan(2)
    assert s.image.shape == s.hn_image.shape == s.rand_image.shape == s.ref_image.shape == (4, 2, 2)
    assert torch.equal(s.rand_image, cache[p.rand_image_id])
    assert s.ref_box.shape == (4,)
    with pytest.raises(ValueError, match="image_size 16.*asks for 32"):
        CocoRefDataset(coco, refs, negatives, CocoRefConfig(image_size=32), latents=cache)


def test_expressions_outside_captions_file(parts):
    coco, refs, negatives = parts
    stray = RefRecord("x:1:1", 999, "COCO_train2014_000000000999.jpg", 10, 10, (0, 0, 5, 5), "thing", "refcoco",
                      "train")
    with pytest.raises(DataFormatError, match=r"1 of 6 expressions.*x:1:1 \(image 999\).*skip_missing"):
        CocoRefDataset(coco, [*refs, stray], negatives, CocoRefConfig(image_size=16))
    ds = CocoRefDataset(coco, [*refs, stray], negatives, CocoRefConfig(image_size=16, skip_missing=True))
    assert len(ds) == 5


def test_build_hn_coco(parts, tmp_path):
    coco, _, negatives = parts
    summary = build_hn_coco(coco, negatives, tmp_path / "hn_coco.json", HNCocoConfig(seed=1))
    data = json.loads((tmp_path / "hn_coco.json").read_text())
    assert summary["i2t"] == summary["t2i"] == 6 == len(data["i2t"])
    for item in data["i2t"]:
        pos, *negs = item["caption_ids"]
        assert item["label"] == 0 and len(negs) == 3 and len(set(negs)) == 3
        assert coco.caption_by_id[pos].image_id == item["image_id"]
        assert set(negs) <= set(negatives.captions_for(item["image_id"]))
        assert item["captions"][0] == coco.caption_by_id[pos].text
    for item in data["t2i"]:
        pos, *negs = item["image_ids"]
        assert pos == coco.caption_by_id[item["caption_id"]].image_id and len(negs) == 3
        assert set(negs) <= set(negatives.images_for(item["caption_id"]))
    build_hn_coco(coco, negatives, tmp_path / "again.json", HNCocoConfig(seed=1))
    assert json.loads((tmp_path / "again.json").read_text())["i2t"] == data["i2t"]
    with pytest.raises(DataFormatError, match="only 3 mined negatives, 4 are needed"):
        build_hn_coco(coco, negatives, tmp_path / "x.json", HNCocoConfig(n_negatives=4))
