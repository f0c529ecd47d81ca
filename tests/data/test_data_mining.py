"""Hard-negative mining: exact exclusion of true positives, top-k ordering, resume, text-only fallback."""

from __future__ import annotations

import json

import pytest
import torch

from dptune.data.coco import load_coco_captions
from dptune.data.embedders import HFClipEmbedder, OpenClipEmbedder, SDTextEmbedder, clip_preprocess
from dptune.data.hard_negatives import HardNegatives
from dptune.data.mining import MiningConfig, exclusion_lists, mine_hard_negatives, topk_excluding
from dptune.utils.io import load_tensors
from fixtures_realdata import write_coco, write_tiny_clip

CFG = MiningConfig(k_captions=4, k_images=2, batch_size=3, shard_size=5, query_chunk=4)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return write_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture
def coco(tmp_path):
    return load_coco_captions(write_coco(tmp_path / "coco"))


def test_topk_excluding_orders_and_excludes():
    keys = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.7, 0.7]]), dim=-1)
    query = torch.tensor([[1.0, 0.0]])
    scores, idx = topk_excluding(query, keys, [[0]], k=3)
    assert idx.tolist() == [[1, 3, 2]]  # key 0 is the positive: never returned even though it is closest
    assert scores[0, 0] > scores[0, 1] > scores[0, 2]


def test_exclusion_lists_cover_own_and_duplicate_captions(coco):
    img_excl, cap_excl = exclusion_lists(coco)
    img_index = {im.image_id: i for i, im in enumerate(coco.images)}
    texts = [c.text for c in coco.captions]
    dup = [j for j, t in enumerate(texts) if t == "a red car on the road"]
    assert len(dup) == 2  # image 10 and image 30 share this caption text
    for image_id in (10, 30):
        assert set(dup) <= set(img_excl[img_index[image_id]])
    for j in dup:
        assert cap_excl[j] == sorted([img_index[10], img_index[30]])


def _check_index(index: HardNegatives, coco, k_cap: int, k_img: int) -> None:
    for im in coco.images:
        own = {c.caption_id for c in coco.captions_of(im.image_id)}
        own_texts = {c.text.lower().strip(" .") for c in coco.captions_of(im.image_id)}
        negs = index.captions_for(im.image_id)
        assert len(negs) == k_cap == len(set(negs))
        assert not own & set(negs)  # a true positive is never a negative
        assert not own_texts & {coco.caption_by_id[c].text.lower().strip(" .") for c in negs}
    for cap in coco.captions:
        negs = index.images_for(cap.caption_id)
        assert len(negs) == k_img and cap.image_id not in negs


def test_mining_hf_clip_excludes_positives_and_ranks(coco, clip_dir, tmp_path):
    emb = HFClipEmbedder(clip_dir)
    out = tmp_path / "hn.json"
    summary = mine_hard_negatives(coco, emb, out, CFG, progress=False)
    assert summary["text_only"] is False and summary["captions"] == len(coco.captions)
    index = HardNegatives.load(out)
    _check_index(index, coco, 4, 2)
    raw = json.loads(out.read_text())
    for scores in list(raw["hn_caption_scores"].values()) + list(raw["hn_image_scores"].values()):
        assert scores == sorted(scores, reverse=True)
    # brute force over the stored embeddings: the kept captions are the best non-positive ones, in order
    # (compared through scores: duplicate caption texts tie exactly)
    work = tmp_path / "hn.json.parts"
    text = torch.cat([load_tensors(p)["emb"] for p in sorted(work.glob("text_*"))]).float()
    image = torch.cat([load_tensors(p)["emb"] for p in sorted(work.glob("image_*"))]).float()
    img_excl, _ = exclusion_lists(coco)
    row_of = {c.caption_id: j for j, c in enumerate(coco.captions)}
    for i, im in enumerate(coco.images):
        sims = image[i] @ text.T  # (N_cap,)
        best = [sims[j].item() for j in sims.argsort(descending=True).tolist() if j not in img_excl[i]][:4]
        kept = [sims[row_of[c]].item() for c in index.captions_for(im.image_id)]
        assert kept == pytest.approx(best, abs=1e-5)
        assert raw["hn_caption_scores"][str(im.image_id)] == pytest.approx(best, abs=1e-4)


class _Crashing:
    """Wraps an embedder and raises after ``n`` text batches: a kill in the middle of the run."""

    def __init__(self, inner, n):
        self.inner, self.n, self.calls = inner, n, 0
        self.name, self.supports_images = inner.name, inner.supports_images

    def embed_texts(self, texts):
        self.calls += 1
        if self.calls > self.n:
            raise KeyboardInterrupt("simulated kill")
        return self.inner.embed_texts(texts)

    def embed_images(self, images):
        return self.inner.embed_images(images)


def test_mining_resumes_after_kill(coco, clip_dir, tmp_path):
    emb = HFClipEmbedder(clip_dir)
    mine_hard_negatives(coco, emb, tmp_path / "full.json", CFG, progress=False)
    crashing = _Crashing(emb, n=3)  # shard_size 5 / batch 3 = 2 batches per shard: dies inside shard 2
    with pytest.raises(KeyboardInterrupt):
        mine_hard_negatives(coco, crashing, tmp_path / "resumed.json", CFG, progress=False)
    parts = tmp_path / "resumed.json.parts"
    assert len(list(parts.glob("text_*.safetensors"))) == 1 and not (tmp_path / "resumed.json").exists()
    counting = _Crashing(emb, n=10**6)
    mine_hard_negatives(coco, counting, tmp_path / "resumed.json", CFG, progress=False)
    assert counting.calls == 3  # 13 captions = shards of 5, 5, 3: only shards 2 and 3 (2 + 1 batches) rerun
    assert json.loads((tmp_path / "resumed.json").read_text())["hn_captions"] == \
        json.loads((tmp_path / "full.json").read_text())["hn_captions"]
    with pytest.raises(ValueError, match="different.*k_captions"):
        mine_hard_negatives(coco, emb, tmp_path / "resumed.json", MiningConfig(k_captions=3, shard_size=5),
                            progress=False)


def test_sd_text_fallback_is_text_only(coco, tiny_pipeline_dir, tmp_path):
    emb = SDTextEmbedder(tiny_pipeline_dir)
    assert emb.embed_texts(["a red car", "a dog"]).norm(dim=-1).allclose(torch.ones(2))
    summary = mine_hard_negatives(coco, emb, tmp_path / "hn.json", CFG, progress=False)
    assert summary["text_only"] is True
    assert not list((tmp_path / "hn.json.parts").glob("image_*"))  # images were never opened
    _check_index(HardNegatives.load(tmp_path / "hn.json"), coco, 4, 2)


def test_open_clip_missing_gives_clear_error(tmp_path):
    try:
        import open_clip  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install open_clip_torch.*hf_clip"):
            OpenClipEmbedder("ViT-H-14", tmp_path / "model.bin")
    else:
        with pytest.raises(FileNotFoundError, match="open_clip_pytorch_model.bin"):
            OpenClipEmbedder("ViT-H-14", tmp_path / "model.bin")


def test_clip_preprocess_centre_crops():
    from PIL import Image

    im = Image.new("RGB", (40, 20), (255, 255, 255))
    im.paste((0, 0, 0), (0, 0, 4, 20))  # black left strip: resized to 32x16, then cropped away (left = 8)
    x = clip_preprocess([im], 16)
    assert x.shape == (1, 3, 16, 16)
    white = (1.0 - 0.48145466) / 0.26862954
    assert torch.allclose(x[0, 0], torch.full((16, 16), white), atol=1e-4)
