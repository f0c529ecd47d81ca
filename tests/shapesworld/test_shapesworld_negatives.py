"""ShapesWorld hard and random negatives (paper App. B.1): minimal edits that change the truth."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

import dptune.shapesworld as sw
from dptune.shapesworld.grammar import Kind, PromptSpec
from dptune.shapesworld.negatives import (
    EDITS,
    hard_negative_candidates,
    hard_negative_scene,
    sample_hard_negative,
    spec_diff,
)
from dptune.shapesworld.splits import all_specs
from dptune.shapesworld.truth import prompt_holds


def _expected_diff_ok(edit: str, a: PromptSpec, b: PromptSpec) -> bool:
    d = spec_diff(a, b)
    if edit in ("colour", "shape"):
        return len(d) == 1 and next(iter(d)).startswith(edit)
    if edit == "count":
        return d == {"count"}
    if edit == "flip":
        return d == {"relation"} and b.relation != a.relation
    if edit == "swap":
        swapped = (b.kinds[0].colour, b.kinds[1].colour) == (a.kinds[1].colour, a.kinds[0].colour)
        return d == {"colour0", "colour1"} and swapped
    raise AssertionError(edit)


def test_every_candidate_edit_changes_exactly_the_intended_attribute():
    seen = Counter()
    for cat in sw.CATEGORIES:
        for spec in all_specs(cat):
            for edit, hn in hard_negative_candidates(spec):
                assert _expected_diff_ok(edit, spec, hn), (edit, sw.caption(spec), sw.caption(hn))
                assert sw.caption(hn) != sw.caption(spec)
                seen[edit] += 1
    assert set(seen) == set(EDITS)


def test_spec_diff_detects_extra_changes():
    a = PromptSpec("relation", (Kind("red", "circle"), Kind("blue", "square")), relation="left")
    b = PromptSpec("relation", (Kind("green", "circle"), Kind("blue", "square")), relation="right")
    assert spec_diff(a, b) == {"colour0", "relation"}
    assert not _expected_diff_ok("flip", a, b)


def test_primary_edit_gets_about_half_of_the_relation_negatives():
    spec = PromptSpec("relation", (Kind("red", "circle"), Kind("blue", "square")), relation="left")
    rng = np.random.default_rng(0)
    edits = Counter(sample_hard_negative(spec, rng, id_only=False)[0] for _ in range(400))
    assert 0.5 < edits["flip"] / 400 < 0.75  # 0.5 primary + 0.5 * 1/4 uniform = 0.625
    assert set(edits) == {"colour", "shape", "swap", "flip"}


def test_dataset_hard_negatives_are_minimal_keep_layout_and_flip_truth():
    ds = sw.ShapesWorldDataset("train", size=200, seed=9)
    same_layout, edits = 0, Counter()
    for i in range(len(ds)):
        r = ds.record(i)
        edits[r.hn_edit] += 1
        assert _expected_diff_ok(r.hn_edit, r.spec, r.hn_spec)
        img, hn_img = sw.render_scene(r.scene), sw.render_scene(r.hn_scene)
        pos, hn = sw.make_prompt(r.spec), sw.make_prompt(r.hn_spec)
        assert sw.judge_image(hn_img, hn).correct and sw.judge_image(img, pos).correct
        assert not sw.judge_image(hn_img, pos).correct, (i, pos.text, hn.text)  # judge rejects the hard negative
        assert not sw.judge_image(img, hn).correct
        pos_geoms = sorted(o.geom for o in r.scene.objects)
        same_layout += r.hn_edit != "count" and sorted(o.geom for o in r.hn_scene.objects) == pos_geoms
    assert set(edits) == set(EDITS)
    non_count = sum(n for e, n in edits.items() if e != "count")
    assert same_layout >= 0.7 * non_count  # the layout is kept unless the split filter forbids it


def test_flip_negative_swaps_positions():
    spec = PromptSpec("relation", (Kind("red", "circle"), Kind("blue", "square")), relation="above")
    hn = PromptSpec("relation", spec.kinds, relation="below")
    rng = np.random.default_rng(1)
    scene = sw.scene_for_spec(spec, rng)
    hn_scene = hard_negative_scene(scene, hn, "flip", rng)
    assert hn_scene.objects[0].geom == scene.objects[1].geom
    assert hn_scene.objects[1].geom == scene.objects[0].geom


def test_random_negatives_are_unrelated_in_both_directions():
    ds = sw.ShapesWorldDataset("train", size=120, seed=4)
    for i in range(len(ds)):
        r = ds.record(i)
        assert r.rand_spec != r.spec
        assert not prompt_holds(r.rand_spec, r.scene.objects)[0]
        assert not prompt_holds(r.spec, r.rand_scene.objects)[0]


def test_no_hard_negative_when_split_excludes_everything(monkeypatch):
    import dptune.shapesworld.negatives as neg

    monkeypatch.setattr(neg, "is_id_spec", lambda s: False)  # a split that holds out every edit
    spec = PromptSpec("colour", (Kind("red", "circle"),))
    with pytest.raises(RuntimeError, match="no hard negative"):
        sample_hard_negative(spec, np.random.default_rng(0), id_only=True)
