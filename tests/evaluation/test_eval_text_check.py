"""The text-separability diagnostic: identical captions are flagged, edits are real one-attribute edits."""

from __future__ import annotations

import pytest

from dptune.evaluation.text_check import edit_separability, format_table, world_edit_pairs
from dptune.shapesworld.eval_hooks import shapesworld_edit_pairs
from dptune.shapesworld.grammar import parse_prompt
from dptune.shapesworld.negatives import EDITS, spec_diff


def test_edit_pairs_cover_every_edit_with_one_attribute_changed():
    pairs = shapesworld_edit_pairs(n_per_edit=8, seed=1)
    assert set(pairs) == set(EDITS) and all(len(v) == 8 for v in pairs.values())
    for edit, items in pairs.items():
        for a, b in items:
            diff = spec_diff(parse_prompt(a).spec, parse_prompt(b).spec)
            assert diff, (edit, a, b)
            if edit == "flip":
                assert diff == {"relation"}
            if edit == "count":
                assert diff == {"count"}


def test_identical_captions_are_flagged_and_different_ones_are_not(tiny_backbone):
    same = [("a red circle", "a red circle"), ("two blue squares", "two blue squares")]
    diff = [("a red circle", "three green triangles"), ("two blue squares", "a yellow circle")]
    r = edit_separability(tiny_backbone, {"same": same, "different": diff, "empty": []})
    assert set(r) == {"same", "different"}  # edit kinds without pairs are left out
    assert r["same"]["pooled_cos"] == pytest.approx(1.0, abs=1e-5) and r["same"]["near_identical"] == 1.0
    assert r["same"]["hidden_rel_diff"] == pytest.approx(0.0, abs=1e-6)
    assert r["different"]["hidden_rel_diff"] > 0.01 and r["different"]["n"] == 2
    assert "same | 2 |" in format_table(r)


def test_world_edit_pairs_come_from_the_registry():
    assert world_edit_pairs("shapesworld", 4) == shapesworld_edit_pairs(4)  # by world name or model alias
    assert world_edit_pairs("coco", 4) == {} and world_edit_pairs("some/folder", 4) == {}  # nothing to check
