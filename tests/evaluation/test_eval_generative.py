"""Generative evaluation with injected fake generators: seeds, judge aggregation, saved images, CIs."""

from __future__ import annotations

import numpy as np
import pytest

import dptune.shapesworld as sw
from dptune.evaluation.generative import evaluate_prompt_set, image_seed, to_uint8
from dptune.evaluation.prompt_sets import PromptRecord, PromptSet, load_prompt_set
from dptune.shapesworld.eval_hooks import judge_scorer
from helpers import perfect_generator, relation_blind_generator


def test_seed_rule_is_shared_by_every_method():
    assert [image_seed(100, i, 3, j) for i in range(2) for j in range(3)] == [100, 101, 102, 103, 104, 105]
    calls = []
    ps = load_prompt_set("shapesworld-id", n_per_category=1)
    evaluate_prompt_set(
        ps, perfect_generator(calls), {"judge": judge_scorer}, images_per_prompt=3, base_seed=7, batch_size=5
    )
    assert sum(calls, []) == list(range(7, 7 + 4 * 3))
    assert [len(c) for c in calls] == [5, 5, 2]


def test_judge_aggregation_per_category_and_saved_images(tmp_path):
    ps = load_prompt_set("shapesworld-ood", n_per_category=3)
    res = evaluate_prompt_set(
        ps,
        relation_blind_generator(),
        {"judge": judge_scorer},
        images_per_prompt=2,
        base_seed=0,
        batch_size=4,
        image_dir=tmp_path / "img",
        rel_root=tmp_path,
        n_boot=500,
    )
    s = res["summary"]["judge"]
    assert {c: s[c]["mean"] for c in sw.CATEGORIES} == {
        "colour": 1.0,
        "count": 1.0,
        "binding": 1.0,
        "relation": 0.0,
    }
    assert s["overall"]["mean"] == pytest.approx(0.75) and s["category_mean"]["mean"] == pytest.approx(0.75)
    assert s["relation"]["ci_low"] == s["relation"]["ci_high"] == 0.0
    # stratified bootstrap with deterministic categories: the overall interval collapses onto 0.75
    assert s["overall"]["ci_low"] == pytest.approx(0.75) and s["overall"]["n"] == 12
    assert res["summary"]["judge.exact"]["colour"]["mean"] == 1.0
    assert len(res["images"]) == 24
    rec = res["images"][-1]
    assert rec["category"] == "relation" and rec["seed"] == 23 and rec["metrics"]["judge"]["correct"] is False
    assert "does not hold" in rec["metrics"]["judge"]["reason"]
    assert (tmp_path / rec["file"]).is_file() and rec["file"].startswith("img/")
    assert res["seed_rule"].startswith("seed = base_seed")


def test_mixed_verdicts_give_an_interval_around_the_mean():
    rng = np.random.default_rng(0)

    def coin_flip(prompts, seeds):  # half the images are blank (wrong), half correct
        imgs = perfect_generator()(prompts, seeds)
        imgs[rng.random(len(imgs)) < 0.5] = 1.0
        return imgs

    ps = load_prompt_set("shapesworld-id", n_per_category=10)
    res = evaluate_prompt_set(ps, coin_flip, {"judge": judge_scorer}, images_per_prompt=2, n_boot=1000)
    o = res["summary"]["judge"]["overall"]
    assert 0.25 < o["mean"] < 0.75 and o["ci_low"] < o["mean"] < o["ci_high"]
    assert o["ci_high"] - o["ci_low"] < 0.4


def test_custom_scorer_on_a_plain_prompt_set():
    ps = PromptSet("toy", [PromptRecord("x", "a"), PromptRecord("yy", "b")], "test", "txt")

    def gen(prompts, seeds):
        return np.zeros((len(prompts), 4, 4, 3), dtype=np.uint8)

    def length_scorer(images, prompts):
        return [{"score": float(len(p.text))} for p in prompts]

    res = evaluate_prompt_set(ps, gen, {"len": length_scorer}, images_per_prompt=2)
    assert res["summary"]["len"]["a"]["mean"] == 1.0 and res["summary"]["len"]["b"]["mean"] == 2.0
    assert res["summary"]["len"]["overall"]["mean"] == 1.5


def test_generator_output_is_checked():
    ps = load_prompt_set("shapesworld-id", n_per_category=1)
    with pytest.raises(ValueError, match="channels last"):
        evaluate_prompt_set(ps, lambda p, s: np.zeros((len(p), 3, 8, 8)), {"judge": judge_scorer}, 1)
    with pytest.raises(ValueError, match="returned 1 images"):
        evaluate_prompt_set(ps, lambda p, s: np.zeros((1, 8, 8, 3)), {"judge": judge_scorer}, 1, batch_size=2)
    assert to_uint8(np.full((1, 2, 2, 3), 0.5)).max() == 128
