"""ShapesWorld grammar + renderer: determinism, coverage, geometry, trainer helpers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

import dptune.shapesworld as sw
from dptune.shapesworld.grammar import COUNT_WORDS, PALETTE, RELATION_PHRASES, Kind, PromptSpec
from dptune.shapesworld.pairs import training_scene
from dptune.shapesworld.refexp import find_refexps
from dptune.shapesworld.render import render_scene, satisfies
from dptune.shapesworld.splits import all_specs


def test_render_prompt_is_deterministic_per_seed():
    p = sw.parse_prompt("a red circle to the left of a blue square")
    a, b = sw.render_prompt(p, 5), sw.render_prompt(p, 5)
    assert a.dtype == np.uint8 and a.shape == (32, 32, 3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, sw.render_prompt(p, 6))


def test_sample_training_pairs_shapes_determinism_and_equal_shares():
    imgs, caps = sw.sample_training_pairs(400, seed=3)
    assert imgs.shape == (400, 32, 32, 3) and imgs.dtype == np.uint8 and len(caps) == 400
    imgs2, caps2 = sw.sample_training_pairs(10, seed=3)
    assert np.array_equal(imgs[:10], imgs2) and caps[:10] == caps2  # pair i depends only on (seed, i)
    cats = [sw.parse_prompt(c).category for c in caps]
    assert {c: cats.count(c) for c in sw.CATEGORIES} == {c: 100 for c in sw.CATEGORIES}
    other, _ = sw.sample_training_pairs(10, seed=4)
    assert not np.array_equal(imgs[:10], other)


def test_grammar_coverage_in_training_pairs():
    _, caps = sw.sample_training_pairs(800, seed=0)
    words = {w for c in caps for w in c.split()}
    for w in (*sw.COLOURS, *sw.SHAPES, *COUNT_WORDS.values(), "left", "right", "above", "below"):
        assert w in words or f"{w}s" in words, w
    relations = {sw.parse_prompt(c).spec.relation for c in caps} - {None}
    assert relations == set(sw.RELATIONS)


def test_caption_parse_roundtrip_for_every_spec():
    n = 0
    for cat in sw.CATEGORIES:
        for spec in all_specs(cat):
            p = sw.make_prompt(spec)
            assert sw.parse_prompt(p.text) == p
            n += 1
    assert n == 12 + 36 + 72 + 288


@pytest.mark.parametrize("text", ["a purple circle", "five red squares", "a red circle and a red square", ""])
def test_parse_rejects_bad_captions(text):
    with pytest.raises(ValueError):
        sw.parse_prompt(text)


def test_spec_validation_errors_name_the_problem():
    with pytest.raises(ValueError, match="differ in colour and shape"):
        PromptSpec("binding", (Kind("red", "circle"), Kind("red", "square")))
    with pytest.raises(ValueError, match="count must be one of"):
        PromptSpec("count", (Kind("red", "circle"),), count=5)
    with pytest.raises(ValueError, match="unknown colour"):
        Kind("pink", "circle")
    with pytest.raises(ValueError, match="match its spec"):
        sw.Prompt("a red square", "colour", PromptSpec("colour", (Kind("red", "circle"),)))


def test_vocabulary_covers_every_generated_word():
    vocab = set(sw.vocabulary())
    assert sw.vocabulary() == sorted(vocab) and all((w.isalpha() and w.islower()) or w.isdigit() for w in vocab)
    texts = [sw.make_prompt(s).text for c in sw.CATEGORIES for s in all_specs(c)]
    ds = sw.ShapesWorldDataset("train", size=60, seed=1)
    for i in range(len(ds)):
        r = ds.record(i)
        texts += [r.ref.text] + [x.text for xs in find_refexps(r.ref_scene).values() for x in xs]
    used = {w for t in texts for w in t.split()}
    assert used <= vocab
    assert {"the", "of", "to"} <= used


def test_objects_never_touch_and_boxes_are_tight():
    for i in range(300):
        spec, scene = training_scene(i, seed=11)
        img = render_scene(scene)
        assert satisfies(spec, scene)
        fg = np.any(img != 255, axis=-1)  # (32, 32)
        _, n = ndimage.label(fg, structure=np.ones((3, 3)))
        assert n == len(scene.objects)  # 8-connected components: no two objects touch
        for o in scene.objects:
            x0, y0, x1, y1 = o.box
            assert 0 <= x0 < x1 <= 32 and 0 <= y0 < y1 <= 32
            crop = img[y0:y1, x0:x1]
            colour_mask = np.all(crop == PALETTE[o.colour], axis=-1)
            assert colour_mask[0].any() and colour_mask[-1].any()  # box touches the shape on all sides
            assert colour_mask[:, 0].any() and colour_mask[:, -1].any()
            cx, cy, _, _ = o.box_cxcywh()
            assert 0 < cx < 1 and 0 < cy < 1


def test_relation_renders_put_subject_on_the_named_side():
    for rel in sw.RELATIONS:
        spec = PromptSpec("relation", (Kind("red", "circle"), Kind("blue", "square")), relation=rel)
        for seed in range(20):
            scene = sw.scene_for_spec(spec, np.random.default_rng(seed))
            (ax, ay), (bx, by) = scene.objects[0].centre, scene.objects[1].centre
            along = {"left": bx - ax, "right": ax - bx, "above": by - ay, "below": ay - by}[rel]
            assert along >= 6, (rel, seed, along)
            assert RELATION_PHRASES[rel] in sw.caption(spec)
