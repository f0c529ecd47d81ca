"""COCO captions, refer (pickle -> JSON index) and MDETR loaders on tiny files in the real formats."""

from __future__ import annotations

import io
import json
import os
import pickle
from collections import OrderedDict

import numpy as np
import pytest
import torch
from PIL import Image

from dptune.data.coco import default_image_dir, load_coco_captions
from dptune.data.formats import DataFormatError
from dptune.data.images import load_image_tensor, xywh_to_cxcywh_norm
from dptune.data.refcoco import load_mdetr_refexp, load_ref_records, load_refer_index
from dptune.data.refer_pickle import RestrictedUnpickler, convert_refer, restricted_load
from fixtures_realdata import COCO_IMAGES, REFS, write_coco, write_mdetr, write_refer


def test_coco_captions_load(tmp_path):
    path = write_coco(tmp_path / "coco")
    coco = load_coco_captions(path)
    assert [im.image_id for im in coco.images] == [i for i, *_ in COCO_IMAGES]
    assert len(coco.captions) == sum(len(c) for *_, c in COCO_IMAGES)
    assert [c.text for c in coco.captions_of(10)] == ["a red car on the road", "A red car."]  # newline stripped
    assert coco.image_dir == tmp_path / "coco" / "train2014" == default_image_dir(path)
    assert coco.image_path(20).is_file()


def test_image_tensor_square_and_range(tmp_path):
    coco = load_coco_captions(write_coco(tmp_path / "coco"))
    x = load_image_tensor(coco.image_path(20), 16)  # the greyscale 24x32 JPEG comes back as RGB, square
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    assert torch.equal(x[0], x[1])  # grey: identical channels
    arr = np.zeros((4, 16, 3), dtype=np.uint8)
    arr[:, 8:] = 255  # left half black, right half white
    Image.fromarray(arr).save(tmp_path / "bw.png")
    y = load_image_tensor(tmp_path / "bw.png", 8)
    assert y.shape == (3, 8, 8)
    assert torch.all(y[:, :, 0] == -1.0) and torch.all(y[:, :, -1] == 1.0)  # [0, 255] -> [-1, 1]


def test_box_to_normalised_cxcywh():
    box = xywh_to_cxcywh_norm([10, 20, 30, 40], width=100, height=200)
    assert torch.allclose(box, torch.tensor([0.25, 0.2, 0.3, 0.2]))


def test_coco_missing_and_malformed_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="captions_train2014.json"):
        load_coco_captions(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [')
    with pytest.raises(DataFormatError, match="not valid JSON"):
        load_coco_captions(bad)
    inst = tmp_path / "instances.json"
    inst.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "width": 2, "height": 2}],
                                "annotations": [{"id": 5, "image_id": 1, "bbox": [0, 0, 1, 1]}]}))
    with pytest.raises(DataFormatError, match=r"annotations\[0\] lacks key\(s\) \['caption'\]"):
        load_coco_captions(inst)


def test_coco_caption_of_unknown_image(tmp_path):
    path = write_coco(tmp_path / "coco")
    data = json.loads(path.read_text())
    data["annotations"][3]["image_id"] = 999
    path.write_text(json.dumps(data))
    with pytest.raises(DataFormatError, match=r"annotations\[3\].*image 999"):
        load_coco_captions(path)


def test_convert_refer_roundtrip(tmp_path):
    write_refer(tmp_path / "refer", "refcoco", "unc")
    write_refer(tmp_path / "refer", "refcocog", "umd", refs=REFS[:2])
    summary = convert_refer(tmp_path / "refer", tmp_path / "index.json")
    assert [s["dataset"] for s in summary["sources"]] == ["refcoco", "refcocog"]
    records = load_refer_index(tmp_path / "index.json")
    assert len(records) == 5 + 3 == summary["expressions"]
    first = records[0]
    assert (first.dataset, first.split, first.image_id, first.expression) == ("refcoco", "train", 10, "left car")
    assert first.bbox == (1.0, 2.0, 10.0, 8.0) and (first.width, first.height) == (32, 24)
    assert first.file_name == "COCO_train2014_000000000010.jpg"
    assert {r.split for r in load_ref_records(tmp_path / "index.json", splits=["testA"])} == {"testA"}


def test_restricted_unpickler_allows_plain_data(tmp_path):
    path = tmp_path / "plain.p"
    path.write_bytes(pickle.dumps([{"a": (1, 2.5, "x")}, [None, True]], protocol=2))
    assert restricted_load(path) == [{"a": (1, 2.5, "x")}, [None, True]]


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_restricted_unpickler_refuses_classes(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.p"
    path.write_bytes(pickle.dumps([_Evil(str(marker))], protocol=2))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load global"):
        restricted_load(path)
    assert not marker.exists()  # the payload never ran
    blob = pickle.dumps(OrderedDict(a=1), protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="collections.OrderedDict"):
        RestrictedUnpickler(io.BytesIO(blob)).load()


def test_convert_refer_refuses_tampered_pickle(tmp_path):
    ds = write_refer(tmp_path / "refer")
    (ds / "refs(unc).p").write_bytes(pickle.dumps([_Evil(str(tmp_path / "x"))], protocol=2))
    with pytest.raises(DataFormatError, match=r"refs\(unc\).p: refusing"):
        convert_refer(tmp_path / "refer", tmp_path / "index.json")
    assert not (tmp_path / "index.json").exists()


def test_refer_pickle_never_loaded_implicitly(tmp_path):
    ds = write_refer(tmp_path / "refer")
    with pytest.raises(DataFormatError, match="convert-refer"):
        load_ref_records(ds / "refs(unc).p")


def test_box_outside_image_names_record(tmp_path):
    bad = [(7, 777, 10, "train", ["far away car"], [20.0, 2.0, 30.0, 8.0])]  # x + w = 50 > width 32
    write_refer(tmp_path / "refer", refs=bad)
    with pytest.raises(DataFormatError, match=r"ref_id 7.*outside its 32x24 image.*fix or remove"):
        convert_refer(tmp_path / "refer", tmp_path / "index.json")
    mdetr = write_mdetr(tmp_path / "finetune_refcoco_train.json", refs=bad)
    with pytest.raises(DataFormatError, match=r"images\[0\] \(expression 'far away car'\).*outside"):
        load_mdetr_refexp(mdetr)


def test_mdetr_loader(tmp_path):
    path = write_mdetr(tmp_path / "finetune_refcoco_testA.json")
    records = load_ref_records(path)
    assert len(records) == 5
    r = records[1]
    assert (r.image_id, r.expression, r.split, r.dataset) == (10, "the red car", "testA", "refcoco")
    assert r.tokens_positive == ((0, len("the red car")),)
    data = json.loads(path.read_text())
    data["annotations"].pop(2)
    path.write_text(json.dumps(data))
    with pytest.raises(DataFormatError, match=r"images\[2\].*no annotation"):
        load_mdetr_refexp(path)
