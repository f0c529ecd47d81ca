"""ShapesWorldDataset: the DPTDataset contract, determinism per index, referring expressions."""

from __future__ import annotations

import re

import pytest
import torch

import dptune.shapesworld as sw
from dptune.data.interface import DPTDataset, DPTSample, collate_samples
from dptune.shapesworld.grammar import RELATION_PHRASES
from dptune.shapesworld.truth import depicts

_REL = {v: k for k, v in RELATION_PHRASES.items()}
_REL_RE = re.compile(rf"^the (.+?) ({'|'.join(_REL)}) the (.+)$")


def _matches(desc: str, o) -> bool:
    words = desc.split()
    return o.shape == words[-1] and (len(words) == 1 or o.colour == words[0])


def _resolve(text: str, objects) -> list[int]:
    """Independent reading of an expression: indices of the objects it can refer to."""
    m = _REL_RE.match(text)
    if not m:
        return [i for i, o in enumerate(objects) if _matches(text.removeprefix("the "), o)]
    subj, rel, anchor = m.group(1), _REL[m.group(2)], m.group(3)
    anchors = [o for o in objects if _matches(anchor, o)]
    assert len(anchors) == 1, text  # "the <anchor>" must itself be unique
    return [i for i, o in enumerate(objects)
            if _matches(subj, o) and o is not anchors[0] and depicts(o, anchors[0], rel)]


def test_dataset_satisfies_protocol_and_sample_contract():
    ds = sw.ShapesWorldDataset("train", size=16, seed=0)
    assert isinstance(ds, DPTDataset) and len(ds) == 16
    s = ds[3]
    assert isinstance(s, DPTSample)
    for name in ("image", "hn_image", "rand_image", "ref_image"):
        t = getattr(s, name)
        assert t.shape == (3, 32, 32) and t.dtype == torch.float32
        assert t.min() >= -1 and t.max() <= 1 and t.max() == 1  # white background maps to +1
    assert s.ref_box.shape == (4,) and ((s.ref_box > 0) & (s.ref_box <= 1)).all()
    assert len({s.caption, s.hn_caption, s.rand_caption}) == 3
    assert sw.judge_image(s.image, s.caption).correct and not sw.judge_image(s.image, s.hn_caption).correct
    batch = collate_samples([ds[i] for i in range(4)])
    assert batch["image"].shape == (4, 3, 32, 32) and len(batch["ref_expression"]) == 4


def test_samples_are_pure_functions_of_seed_and_index():
    a, b = sw.ShapesWorldDataset("train", 50, seed=1), sw.ShapesWorldDataset("train", 50, seed=1)
    later = b[7]  # access order must not matter
    first = a[7]
    for name in ("image", "hn_image", "rand_image", "ref_image", "ref_box"):
        assert torch.equal(getattr(first, name), getattr(later, name))
    assert (first.caption, first.ref_expression) == (later.caption, later.ref_expression)
    assert torch.equal(a[-1].image, a[49].image)
    c = sw.ShapesWorldDataset("train", 50, seed=2)
    assert any(not torch.equal(a[i].image, c[i].image) for i in range(4))


def test_categories_cycle_in_equal_shares():
    ds = sw.ShapesWorldDataset("train", 40, seed=0)
    cats = [ds.record(i).spec.category for i in range(40)]
    assert all(cats.count(c) == 10 for c in sw.CATEGORIES)


def test_referring_expression_identifies_exactly_the_gold_object():
    ds = sw.ShapesWorldDataset("train", 150, seed=3)
    kinds = set()
    for i in range(len(ds)):
        r = ds.record(i)
        objs = r.ref_scene.objects
        assert 2 <= len(objs) <= 4
        assert _resolve(r.ref.text, objs) == [r.ref.target], (r.ref.text, [o.kind.phrase for o in objs])
        kinds.add(r.ref.kind)
    assert kinds == {"full", "shape", "relation"}


def test_ref_box_matches_judge_detection():
    ds = sw.ShapesWorldDataset("train", 20, seed=8)
    for i in range(len(ds)):
        s = ds[i]
        found = sw.parse_image(s.ref_image)
        boxes = torch.tensor([o.box_cxcywh() for o in found])
        assert (boxes - s.ref_box).abs().sum(1).min() < 1e-6  # the gold box is exactly one detected object


@pytest.mark.parametrize("kwargs,match", [
    ({"split": "val"}, "unknown split"), ({"size": 0}, "size"), ({"seed": -1}, "seed"),
])
def test_bad_arguments_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sw.ShapesWorldDataset(**kwargs)


def test_config_round_trip_and_help():
    from dptune.utils.config import from_dict, help_of, to_dict

    cfg = sw.ShapesWorldConfig(split="id", size=3, seed=2)
    assert from_dict(sw.ShapesWorldConfig, to_dict(cfg)) == cfg
    assert "held-out" in help_of(sw.ShapesWorldConfig, "split")
    assert sw.ShapesWorldDataset.from_config(cfg)[0].caption == sw.ShapesWorldDataset("id", 3, 2)[0].caption


def test_index_out_of_range():
    ds = sw.ShapesWorldDataset("train", 5, seed=0)
    with pytest.raises(IndexError):
        ds[5]
    assert len(list(iter(ds[i] for i in range(len(ds))))) == 5
