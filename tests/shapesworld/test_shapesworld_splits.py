"""ShapesWorld ID/OOD splits: held-out compositions never reach training; eval prompt lists."""

from __future__ import annotations

import numpy as np
import pytest

import dptune.shapesworld as sw
from dptune.shapesworld.grammar import Kind, PromptSpec, Scene
from dptune.shapesworld.render import make_obj
from dptune.shapesworld.splits import (
    HELD_OUT_BINDINGS,
    HELD_OUT_KINDS,
    HELD_OUT_RELATIONS,
    canonical_relation,
    ood_reason,
    split_specs,
)


def test_held_out_sets_are_nonempty_and_leave_every_word_in_training():
    assert HELD_OUT_KINDS and len(HELD_OUT_BINDINGS) == 5 and len(HELD_OUT_RELATIONS) == 16
    for cat in sw.CATEGORIES:
        assert split_specs("id", cat) and split_specs("ood", cat)
    from dptune.shapesworld.grammar import TRAIN_WORDINGS, wordings

    train_words = {w for c in sw.CATEGORIES for s in split_specs("train", c) for t in wordings(s, TRAIN_WORDINGS)
                   for w in t.split()}
    # the only words the U-Net never reads are the paraphrase split's synonyms (the text encoder reads them)
    assert set(sw.vocabulary()) - train_words == {"as", "beneath", "group", "higher", "lower", "side",
                                                   "than", "top", "well"}


def test_ood_reasons_cover_all_three_kinds():
    reasons = {ood_reason(s) for s in split_specs("ood", "relation")}
    assert reasons == {"kind", "binding", "relation"}
    assert all(ood_reason(s) is None for s in split_specs("id", "relation"))


def test_relation_hold_out_covers_both_spellings():
    a, rel, b = sorted(HELD_OUT_RELATIONS)[0]
    opposite = {"left": "right", "above": "below"}[rel]
    both = [PromptSpec("relation", (a, b), relation=rel), PromptSpec("relation", (b, a), relation=opposite)]
    assert canonical_relation(b, opposite, a) == (a, rel, b)
    assert not any(sw.is_id_spec(s) for s in both)


def test_eval_prompts_are_deterministic_disjoint_and_balanced():
    id_p, ood_p = sw.eval_prompts("id", 50), sw.eval_prompts("ood", 50)
    assert len(id_p) == len(ood_p) == 200
    assert [p.text for p in id_p] == [p.text for p in sw.eval_prompts("id", 50)]
    assert [p.text for p in id_p] != [p.text for p in sw.eval_prompts("id", 50, seed=1)]
    assert not {p.text for p in id_p} & {p.text for p in ood_p}
    assert all(sw.is_id_spec(p.spec) for p in id_p) and not any(sw.is_id_spec(p.spec) for p in ood_p)
    for cat in sw.CATEGORIES:
        assert sum(p.category == cat for p in ood_p) == 50
    # cycling through a shuffle: the 2 OOD colour prompts appear 25 times each
    colour_texts = [p.text for p in ood_p if p.category == "colour"]
    assert sorted(set(colour_texts)) == ["a blue circle", "a yellow triangle"]
    assert colour_texts.count("a blue circle") == 25


@pytest.mark.parametrize("split,n", [("train", 5), ("id", 0)])
def test_eval_prompts_reject_bad_arguments(split, n):
    with pytest.raises(ValueError):
        sw.eval_prompts(split, n)


def test_no_ood_composition_in_training_samples_or_negatives():
    ds = sw.ShapesWorldDataset("train", size=240, seed=5)
    for i in range(len(ds)):
        r = ds.record(i)
        for spec in (r.spec, r.hn_spec, r.rand_spec):
            assert sw.is_id_spec(spec), (i, sw.caption(spec))
        for scene in (r.scene, r.hn_scene, r.rand_scene, r.ref_scene):
            assert sw.scene_is_id(scene), i
    _, caps = sw.sample_training_pairs(600, seed=2)
    assert all(sw.is_id_spec(sw.parse_prompt(c).spec) for c in caps)


def test_id_split_dataset_is_in_distribution_but_new():
    tr, idd = sw.ShapesWorldDataset("train", 40, seed=0), sw.ShapesWorldDataset("id", 40, seed=0)
    assert all(sw.is_id_spec(idd.record(i).spec) for i in range(40))
    assert sum(tr[i].caption == idd[i].caption for i in range(40)) < 20  # different random stream


def test_ood_split_dataset_positives_are_held_out():
    ds = sw.ShapesWorldDataset("ood", 40, seed=0)
    assert not any(sw.is_id_spec(ds.record(i).spec) for i in range(40))


def test_scene_filter_rejects_held_out_compositions():
    a, rel, b = sorted(HELD_OUT_RELATIONS)[0]
    dx, dy = (12, 0) if rel == "left" else (0, 12)
    shows = Scene((make_obj(a, 8, 8, 4), make_obj(b, 8 + dx, 8 + dy, 4)))  # a is left of/above b
    reverse = Scene((make_obj(a, 8 + dx, 8 + dy, 4), make_obj(b, 8, 8, 4)))
    assert not sw.scene_is_id(shows) and sw.scene_is_id(reverse)
    pair = sorted(sorted(p) for p in HELD_OUT_BINDINGS)[0]
    assert not sw.scene_is_id(Scene((make_obj(pair[0], 8, 8, 4), make_obj(pair[1], 8, 24, 4))))
    held_kind = sorted(HELD_OUT_KINDS)[0]
    assert not sw.scene_is_id(Scene((make_obj(held_kind, 16, 16, 5),)))
    assert sw.scene_is_id(Scene((make_obj(Kind("red", "circle"), 16, 16, 5),)))


def test_training_scene_generation_respects_filter_for_every_id_spec():
    rng = np.random.default_rng(0)
    for spec in split_specs("train", "relation") + split_specs("train", "binding"):
        assert sw.scene_is_id(sw.scene_for_spec(spec, rng, sw.scene_is_id))
