"""ShapesWorld exact judge: 100% on clean renders, rejects hard negatives, tolerant of mild blur/noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

import dptune.shapesworld as sw
from dptune.shapesworld.grammar import PALETTE, Kind, PromptSpec, Scene
from dptune.shapesworld.negatives import hard_negative_candidates, hard_negative_scene
from dptune.shapesworld.render import make_obj, render_scene


def _renders(n_per_category: int):
    prompts = sw.eval_prompts("id", n_per_category, seed=0) + sw.eval_prompts("ood", n_per_category, seed=0)
    return prompts, [sw.render_prompt(p, seed=i) for i, p in enumerate(prompts)]


def test_judge_is_exact_on_600_clean_renders():
    prompts, images = _renders(75)
    results = sw.judge_batch(images, prompts)
    summary = sw.summarize(results)
    assert summary["overall"]["n"] == 600
    bad = [(r.prompt, r.reason) for r in results if not (r.correct and r.exact_scene)]
    assert not bad, bad[:5]
    assert all(summary[c]["accuracy"] == 1.0 for c in sw.CATEGORIES)


def test_judge_rejects_renders_of_every_hard_negative_edit():
    rng = np.random.default_rng(0)
    checked = set()
    for p in sw.eval_prompts("id", 25, seed=1):
        scene = sw.scene_for_spec(p.spec, rng)
        for edit, hn_spec in hard_negative_candidates(p.spec):
            hn_img = render_scene(hard_negative_scene(scene, hn_spec, edit, rng))
            assert sw.judge_image(hn_img, sw.make_prompt(hn_spec)).correct
            r = sw.judge_image(hn_img, p)
            assert not r.correct, (p.text, sw.caption(hn_spec), r.reason)
            checked.add((p.category, edit))
    assert {e for _, e in checked} == {"colour", "shape", "count", "swap", "flip"}


def test_judge_tolerates_mild_blur_and_noise():
    prompts, images = _renders(25)
    rng = np.random.default_rng(0)
    ok = 0
    for p, img in zip(prompts, images, strict=True):
        blurred = ndimage.gaussian_filter(img.astype(np.float32), sigma=(0.7, 0.7, 0))
        noisy = np.clip(blurred + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
        noisy[rng.integers(0, 32), rng.integers(0, 32)] = PALETTE["red"]  # an isolated speck is ignored
        ok += sw.judge_image(noisy, p).correct
    assert ok == len(prompts)


def test_float_tensor_input_matches_uint8():
    p = sw.parse_prompt("three green triangles")
    img = sw.render_prompt(p, 0)
    t = torch.from_numpy(img).permute(2, 0, 1).float() / 127.5 - 1  # (3, 32, 32) in [-1, 1]
    a, b = sw.judge_image(img, p), sw.judge_image(t, p)
    assert a.correct and b.correct and [o.box for o in a.found] == [o.box for o in b.found]
    assert len(sw.judge_batch(t[None].repeat(2, 1, 1, 1), [p, p])) == 2


def _scene(*objs) -> np.ndarray:
    return render_scene(Scene(tuple(make_obj(Kind(c, s), x, y, r) for c, s, x, y, r in objs)))


def test_count_ignores_other_kinds_but_exact_scene_does_not():
    img = _scene(("red", "square", 7, 7, 4), ("red", "square", 24, 7, 4), ("blue", "circle", 16, 24, 5))
    r = sw.judge_image(img, "two red squares")
    assert r.correct and not r.exact_scene
    assert not sw.judge_image(img, "three red squares").correct


def test_relation_needs_the_named_side():
    left = _scene(("red", "circle", 8, 16, 5), ("blue", "square", 24, 16, 5))
    assert sw.judge_image(left, "a red circle to the left of a blue square").correct
    assert not sw.judge_image(left, "a red circle to the right of a blue square").correct
    assert not sw.judge_image(left, "a red circle above a blue square").correct  # same row: no vertical offset
    assert sw.judge_image(left, "a blue square to the right of a red circle").correct


def test_relation_outcome_splits_missing_holds_and_opposite():
    from dptune.shapesworld.grammar import parse_prompt
    from dptune.shapesworld.truth import relation_outcome

    red, blue = Kind("red", "circle"), Kind("blue", "square")
    left = [make_obj(red, 8, 16, 5), make_obj(blue, 24, 16, 5)]
    same_column = [make_obj(red, 16, 8, 5), make_obj(blue, 16, 24, 5)]
    spec = parse_prompt("a red circle to the left of a blue square").spec
    assert relation_outcome(spec, left) == (True, True, False)
    flipped = parse_prompt("a red circle to the right of a blue square").spec
    assert relation_outcome(flipped, left) == (True, False, True)
    assert relation_outcome(spec, same_column) == (True, False, False)  # neither direction
    assert relation_outcome(spec, left[:1]) is None  # the blue square is missing
    with pytest.raises(ValueError, match="relation spec"):
        relation_outcome(parse_prompt("a red circle").spec, left)


def test_touching_objects_merge_into_a_count_error():
    img = _scene(("green", "square", 10, 16, 5), ("green", "square", 20, 16, 5))  # boxes share an edge
    assert not sw.judge_image(img, "two green squares").correct


def test_summarize_counts_per_category():
    good = sw.render_prompt("a red circle", 0)
    res = sw.judge_batch([good, good], ["a red circle", "a blue circle"])
    s = sw.summarize(res)
    assert s["colour"] == {"n": 2, "correct": 1, "accuracy": 0.5, "exact": 0.5}
    assert "count" not in s and s["overall"]["n"] == 2


@pytest.mark.parametrize("bad", [np.zeros((32, 32), np.uint8), np.zeros((32, 32, 3), np.float32),
                                 np.zeros((32, 32, 3), np.int64)])
def test_bad_images_raise(bad):
    with pytest.raises(ValueError):
        sw.judge_image(bad, "a red circle")


def test_batch_length_mismatch_raises():
    with pytest.raises(ValueError, match="one prompt per image"):
        sw.judge_batch([sw.render_prompt("a red circle", 0)], [])


def test_spec_objects_are_what_the_judge_finds():
    spec = PromptSpec("binding", (Kind("yellow", "square"), Kind("red", "triangle")))
    scene = sw.scene_for_spec(spec, np.random.default_rng(3))
    found = sw.parse_image(render_scene(scene))
    assert sorted((o.kind, o.box) for o in found) == sorted((o.kind, o.box) for o in scene.objects)
