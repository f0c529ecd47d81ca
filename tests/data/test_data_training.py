"""`dptune probe --data coco` on tiny files in the real formats (COCO captions + refer index + negatives)."""

from __future__ import annotations

import json

import pytest

from dptune.cli.main import main
from dptune.data.coco import load_coco_captions
from dptune.data.refer_pickle import convert_refer
from fixtures_realdata import REFS, write_coco, write_fake_negatives, write_refer

MORE_REFS = REFS + [
    (4, 505, 30, "train", ["the blue car"], [2.0, 2.0, 12.0, 10.0]),
    (5, 506, 60, "train", ["the tree"], [1.0, 1.0, 10.0, 20.0]),
]


@pytest.fixture
def coco_files(tmp_path):
    coco_root = tmp_path / "coco"
    captions = write_coco(coco_root)
    write_refer(tmp_path / "refer", refs=MORE_REFS)
    convert_refer(tmp_path / "refer", tmp_path / "refs" / "refer_index.json")
    negatives = write_fake_negatives(load_coco_captions(captions), tmp_path / "hn.json", k_captions=3, k_images=2)
    return coco_root, tmp_path / "refs", negatives


def test_probe_on_coco_refcoco_fixtures(tmp_path, coco_files):
    coco_root, refs, negatives = coco_files
    out = tmp_path / "run"
    rc = main(["probe", "--data", "coco", "--coco-root", str(coco_root), "--refcoco-root", str(refs),
               "--negatives", str(negatives), "--model", "tiny-random", "--steps", "3", "--batch-size", "2",
               "--adapter-d-model", "32", "--adapter-ffn", "64", "--adapter-heads", "4", "--val-size", "2",
               "--out-dir", str(out), "--no-progress"])
    assert rc == 0
    state = json.loads((out / "checkpoints" / "step-0000003" / "state.json").read_text())
    assert state["step"] == 3 and 0.0 <= state["history"][-1]["rec_p1"] <= 1.0


def test_coco_needs_its_paths(tmp_path, capsys):
    assert main(["probe", "--data", "coco", "--model", "tiny-random", "--out-dir", str(tmp_path / "r")]) == 2
    assert "--data coco needs --coco-root" in capsys.readouterr().err


def test_refcoco_root_without_index(tmp_path, coco_files, capsys):
    coco_root, _, negatives = coco_files
    empty = tmp_path / "empty"
    empty.mkdir()
    rc = main(["probe", "--data", "coco", "--coco-root", str(coco_root), "--refcoco-root", str(empty),
               "--negatives", str(negatives), "--model", "tiny-random", "--out-dir", str(tmp_path / "r")])
    assert rc == 2 and "convert-refer" in capsys.readouterr().err


def test_probe_reads_a_latent_cache(tmp_path, coco_files):
    """With --latent-cache the VAE is skipped: cached (4, h, w) latents go straight into the U-Net."""
    from dptune.backbone import load_backbone
    from dptune.data.configs import LatentCacheConfig
    from dptune.data.latent_cache import cache_latents, vae_encoder, vae_meta

    coco_root, refs, negatives = coco_files
    coco = load_coco_captions(coco_root / "annotations" / "captions_train2014.json")
    vae = load_backbone("tiny-random").vae
    items = [(str(im.image_id), coco.image_path(im.image_id)) for im in coco.images]
    cache_latents(items, vae_encoder(vae), tmp_path / "lat", LatentCacheConfig(image_size=16), vae_meta(vae, "tiny"),
                  progress=False)
    out = tmp_path / "run"
    rc = main(["probe", "--data", "coco", "--coco-root", str(coco_root), "--refcoco-root", str(refs),
               "--negatives", str(negatives), "--latent-cache", str(tmp_path / "lat"), "--model", "tiny-random",
               "--steps", "2", "--batch-size", "2", "--adapter-d-model", "32", "--adapter-ffn", "64",
               "--adapter-heads", "4", "--val-size", "2", "--out-dir", str(out), "--no-progress"])
    assert rc == 0 and json.loads((out / "latest.json").read_text())["step"] == 2
