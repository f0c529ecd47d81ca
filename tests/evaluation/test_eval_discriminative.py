"""ITM accuracy and REC P@1: planted scores and boxes, item builders, the probe protocol on a tiny model."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from dptune.backbone import TextEmbeddings
from dptune.evaluation.disc_items import ITMItem, RECItem, load_hn_coco_items, load_refcoco_items, world_items
from dptune.evaluation.discriminative import evaluate_itm, evaluate_rec, matching_credit, rec_hits
from dptune.shapesworld.disc_items import shapesworld_itm_items, shapesworld_rec_items


# ---- pure metrics -----------------------------------------------------------------------------------
def test_matching_credit_on_planted_scores():
    scores = np.array(
        [
            [0.9, 0.1, 0.2, 0.3],  # positive wins
            [0.1, 0.9, 0.2, 0.3],  # hard negative wins
            [0.5, 0.5, 0.1, 0.1],  # tie of 2 at the top -> 1/2
            [0.2, 0.2, 0.2, 0.2],
        ]
    )  # constant scorer -> exactly chance 1/4
    assert matching_credit(scores, [0, 0, 0, 0]).tolist() == [1.0, 0.0, 0.5, 0.25]
    assert matching_credit(scores, [1, 1, 1, 1]).tolist() == [0.0, 1.0, 0.5, 0.25]
    with pytest.raises(ValueError, match="labels"):
        matching_credit(scores, [0, 0])


def test_rec_hits_iou_and_giou_on_planted_boxes():
    gold = torch.tensor([[0.5, 0.5, 0.2, 0.2]] * 4)
    pred = torch.tensor(
        [
            [0.5, 0.5, 0.2, 0.2],  # exact: IoU 1
            [0.55, 0.5, 0.2, 0.2],  # shifted by a quarter width: IoU 0.15/0.25 = 0.6
            [0.6, 0.5, 0.2, 0.2],  # shifted by half: IoU 1/3
            [0.5, 0.5, 0.1, 0.1],
        ]
    )  # inside, quarter area: IoU 0.25
    assert rec_hits(pred, gold).tolist() == [True, True, False, False]
    # GIoU <= IoU: the 0.6-IoU box has enclosing area 0.25*0.2 = 0.05 vs union 0.05 -> GIoU 0.6 still a hit
    assert rec_hits(pred, gold, measure="giou").tolist() == [True, True, False, False]
    far = torch.tensor([[0.1, 0.1, 0.2, 0.2]])
    assert not rec_hits(far, gold[:1]).item()
    with pytest.raises(ValueError, match="measure"):
        rec_hits(pred, gold, measure="l1")


def test_item_validation():
    img = torch.zeros(3, 8, 8)
    with pytest.raises(ValueError, match="1 query"):
        ITMItem("i2t", [img, img], ["a", "b"])
    with pytest.raises(ValueError, match="direction"):
        ITMItem("x2y", [img], ["a", "b"])
    with pytest.raises(ValueError, match="normalised"):
        RECItem(img, "the red circle", (0.5, 0.5, 1.5, 0.2))


# ---- the protocol on a planted fake probe --------------------------------------------------------------
class _FakeBackbone:
    """Images are constant tensors with value v; texts are 'k=<value>'; s(y, z) = -(v - k)^2."""

    image_size, device, dtype = 4, torch.device("cpu"), torch.float32

    def encode_images(self, x):
        return x.mean(dim=(1, 2, 3))[:, None, None, None].expand(-1, 1, 2, 2).clone()  # (B, 1, 2, 2)

    def encode_text(self, texts):
        k = torch.tensor([float(t.split("=")[1]) if "=" in t else 0.0 for t in texts])
        return TextEmbeddings(hidden=k[:, None, None], pooled=k[:, None])

    def add_noise(self, z, noise, t):
        return z  # noiseless, so scores are exactly planted


class _FakeProbe:
    def __init__(self):
        self.backbone = _FakeBackbone()
        self.boxes = None

    def eval(self):
        return self

    def scores(self, z_t, t, text):
        return -((z_t.mean(dim=(1, 2, 3)) - text.pooled[:, 0]) ** 2)

    def __call__(self, z_t, t, hidden):  # REC: query 1 is most probable; its box is planted per item
        b = z_t.shape[0]
        logits = torch.tensor([[0.0, 5.0, 1.0]]).expand(b, -1)
        return SimpleNamespace(boxes=self.boxes[:b], logits_p=logits)


def _img(v):
    return torch.full((3, 4, 4), float(v))


def test_evaluate_itm_on_planted_probe_is_exact_and_batch_invariant():
    items = [
        ITMItem("i2t", [_img(0.5)], ["k=0.5", "k=0.1", "k=-0.3", "k=0.9"], meta={"category": "a"}),
        ITMItem("i2t", [_img(0.2)], ["k=0.9", "k=0.2", "k=0.8", "k=0.7"], meta={"category": "b"}),  # wrong
        ITMItem("t2i", [_img(0.4), _img(0.0), _img(0.9), _img(-0.5)], ["k=0.4"], meta={"category": "a"}),
        ITMItem(
            "t2i", [_img(0.3), _img(0.0), _img(0.6), _img(-0.5)], ["k=0.3"], label=0, meta={"category": "b"}
        ),
    ]
    r = evaluate_itm(_FakeProbe(), items, batch_pairs=3)
    assert (r["i2t"], r["t2i"], r["overall"]) == (50.0, 100.0, 75.0)
    assert r["chance_i2t"] == 25.0 and r["n_i2t"] == 2
    assert r["per_category"]["b"]["i2t"] == 0.0 and r["per_category"]["a"]["overall"] == 100.0
    assert r["scores"] == evaluate_itm(_FakeProbe(), items, batch_pairs=100)["scores"]


def test_evaluate_rec_on_planted_boxes():
    probe = _FakeProbe()
    gold = [(0.5, 0.5, 0.2, 0.2), (0.2, 0.2, 0.2, 0.2)]
    # per item 3 query boxes; query 1 (most probable) hits for item 0 and misses for item 1
    probe.boxes = torch.tensor(
        [
            [[0.1, 0.1, 0.1, 0.1], [0.5, 0.5, 0.2, 0.2], [0.2, 0.2, 0.2, 0.2]],
            [[0.2, 0.2, 0.2, 0.2], [0.8, 0.8, 0.2, 0.2], [0.2, 0.2, 0.2, 0.2]],
        ]
    )
    items = [
        RECItem(_img(0), "the x", gold[0], [gold[0], (0.1, 0.1, 0.1, 0.1)], {"kind": "full"}),
        RECItem(_img(0), "the y", gold[1], [gold[1]] * 4, {"kind": "shape"}),
    ]
    r = evaluate_rec(probe, items, batch_size=8)
    assert r["p_at_1"] == 50.0 and r["p_at_1_giou"] == 50.0
    assert r["chance_objects"] == pytest.approx(100 * (1 / 2 + 1 / 4) / 2)
    assert r["per_kind"] == {"full": 100.0, "shape": 0.0}
    assert 0.0 <= r["random_query"] <= 100.0


# ---- builders --------------------------------------------------------------------------------------------
def test_shapesworld_itm_items_have_one_true_candidate():
    import dptune.shapesworld as sw
    from dptune.shapesworld.judge import judge_image

    items = shapesworld_itm_items("id", 8, seed=0)
    assert [it.direction for it in items] == ["i2t"] * 8 + ["t2i"] * 8
    for it in items:
        assert it.num_candidates == 4 and it.label == 0
        assert it.images[0].shape == (3, 32, 32) and float(it.images[0].min()) >= -1.0
        if it.direction == "i2t":
            assert len(set(it.texts)) == 4
            verdicts = [judge_image(it.images[0], t).correct for t in it.texts]
        else:
            verdicts = [judge_image(img, it.texts[0]).correct for img in it.images]
        assert verdicts == [True, False, False, False], (it.texts, verdicts)
    cats = {it.meta["category"] for it in items}
    assert cats == set(sw.CATEGORIES)
    # the category's defining edit (count / swap / flip) is among the negatives whenever the split allows it
    from dptune.shapesworld.negatives import PRIMARY_EDIT, hard_negative_candidates
    from dptune.shapesworld.splits import is_id_spec

    for it in items[:8]:
        spec = sw.parse_prompt(it.texts[0]).spec
        allowed = {e for e, s in hard_negative_candidates(spec) if is_id_spec(s)}
        primary = PRIMARY_EDIT.get(it.meta["category"])
        assert primary not in allowed or primary in it.meta["edits"]
    again = shapesworld_itm_items("id", 8, seed=0)
    assert [it.texts for it in again] == [it.texts for it in items]
    with pytest.raises(RuntimeError, match="lower n_negatives"):
        shapesworld_itm_items("id", 1, n_negatives=30)


def test_shapesworld_rec_items_box_is_the_target_object():
    items = shapesworld_rec_items("ood", 6, seed=0)
    for it in items:
        assert it.box in it.object_boxes and 2 <= len(it.object_boxes) <= 4
        cx, cy, w, h = it.box
        px = it.image  # (3, 32, 32)
        patch = px[
            :, int(cy * 32 - h * 16) : int(cy * 32 + h * 16), int(cx * 32 - w * 16) : int(cx * 32 + w * 16)
        ]
        assert (patch < 0.99).any()  # the box holds coloured (non-white) pixels


def test_world_items_resolve_registered_sets():
    itm, rec = world_items("shapesworld-ood", 2, noise_seed=3)
    assert [it.texts for it in itm] == [it.texts for it in shapesworld_itm_items("ood", 2, seed=3)]
    assert [it.expression for it in rec] == [it.expression for it in shapesworld_rec_items("ood", 2, seed=3)]
    with pytest.raises(ValueError, match="shapesworld-id"):  # the error lists the registered sets
        world_items("shapesworld-test", 2)


def _write_img(path, value):
    Image.fromarray(np.full((10, 20, 3), value, dtype=np.uint8)).save(path)


def test_hn_coco_and_refcoco_loaders(tmp_path):
    for i in range(4):
        _write_img(tmp_path / f"im{i}.jpg", 40 * i)
    hn = {
        "format": "dptune-hn-mscoco",
        "version": 1,
        "image_dir": str(tmp_path),
        "i2t": [
            {
                "image_id": 0,
                "file_name": "im0.jpg",
                "caption_ids": [1, 2, 3, 4],
                "captions": ["a", "b", "c", "d"],
                "label": 0,
            }
        ],
        "t2i": [
            {
                "caption_id": 1,
                "caption": "a",
                "image_ids": [0, 1, 2, 3],
                "file_names": ["im0.jpg", "im1.jpg", "im2.jpg", "im3.jpg"],
                "label": 0,
            }
        ],
    }
    (tmp_path / "hn.json").write_text(json.dumps(hn))
    items = load_hn_coco_items(tmp_path / "hn.json")
    assert [it.direction for it in items] == ["i2t", "t2i"]
    assert items[1].images[2] == str(tmp_path / "im2.jpg") and items[0].texts == ["a", "b", "c", "d"]
    (tmp_path / "bad.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="build-hn-coco"):
        load_hn_coco_items(tmp_path / "bad.json")
    mdetr = {
        "images": [{"id": 5, "file_name": "im1.jpg", "width": 20, "height": 10, "caption": "left thing"}],
        "annotations": [{"image_id": 5, "bbox": [0, 0, 10, 5]}],
    }
    (tmp_path / "finetune_refcoco_testA.json").write_text(json.dumps(mdetr))
    rec = load_refcoco_items(tmp_path / "finetune_refcoco_testA.json", tmp_path)
    assert rec[0].box == pytest.approx((0.25, 0.25, 0.5, 0.5)) and rec[0].meta["split"] == "testA"
    # images by path are loaded and square-resized by the evaluator: planted probe, value of image i = 40 i
    texts = [f"k={40 * i / 127.5 - 1}" for i in range(4)]
    hn["i2t"][0]["captions"] = texts
    hn["t2i"][0]["caption"] = texts[0]
    (tmp_path / "hn.json").write_text(json.dumps(hn))
    r = evaluate_itm(_FakeProbe(), load_hn_coco_items(tmp_path / "hn.json"))
    assert (r["i2t"], r["t2i"]) == (100.0, 100.0)


# ---- the real probe on the tiny random model -------------------------------------------------------------
def test_tiny_random_probe_runs_both_tasks_deterministically():
    from dptune.adapter import load_probe
    from dptune.backbone import load_backbone

    probe = load_probe(load_backbone("tiny-random"), "random")
    itm = shapesworld_itm_items("id", 4, seed=1)
    r1, r2 = evaluate_itm(probe, itm, t=250, seed=0), evaluate_itm(probe, itm, t=250, seed=0, batch_pairs=5)
    assert np.allclose(r1["scores"], r2["scores"], atol=1e-5)
    assert r1["t"] == 250 and r1["n_i2t"] == 4 and r1["n_t2i"] == 4
    assert not np.allclose(r1["scores"], evaluate_itm(probe, itm, t=900, seed=0)["scores"])
    rec = evaluate_rec(probe, shapesworld_rec_items("id", 4, seed=1))
    assert rec["n"] == 4 and len(rec["pred_boxes"]) == 4 and 25.0 <= rec["chance_objects"] <= 50.0
