"""Bootstrap confidence intervals over prompts: known cases, strata, paired differences."""

from __future__ import annotations

import numpy as np
import pytest

from dptune.evaluation.stats import bootstrap_means, mean_ci, paired_difference_ci, per_prompt_means


def test_bernoulli_half_matches_normal_approximation():
    # 400 prompts, exactly half correct: the 95% CI half-width must be ~1.96 * sqrt(.25 / 400) = 0.049.
    values = np.array([0, 1] * 200, dtype=float)
    ci = mean_ci(values, n_boot=4000, seed=1)
    assert ci["mean"] == 0.5 and ci["n"] == 400
    half = (ci["ci_high"] - ci["ci_low"]) / 2
    assert half == pytest.approx(1.96 * np.sqrt(0.25 / 400), rel=0.1)
    assert ci["ci_low"] < 0.5 < ci["ci_high"]


def test_constant_values_give_a_zero_width_interval():
    ci = mean_ci([0.7] * 30)
    assert ci["ci_low"] == pytest.approx(0.7) and ci["ci_high"] == pytest.approx(0.7)


def test_resampling_is_over_prompts_not_images():
    # 50 prompts x 4 images, images of one prompt perfectly correlated: the per-prompt CI must be as wide
    # as for 50 independent values (2x wider than if the 200 images were treated as independent).
    prompt_ok = np.array([0, 1] * 25, dtype=float)
    images = np.repeat(prompt_ok, 4)
    ids, means = per_prompt_means(images, np.repeat(np.arange(50), 4))
    assert ids == list(range(50)) and np.array_equal(means, prompt_ok)
    w_prompts = np.diff([mean_ci(means, n_boot=4000)[k] for k in ("ci_low", "ci_high")])[0]
    w_images = np.diff([mean_ci(images, n_boot=4000)[k] for k in ("ci_low", "ci_high")])[0]
    assert w_prompts == pytest.approx(2 * w_images, rel=0.2)


def test_stratified_resampling_keeps_category_means_fixed():
    # category a always 1, b always 0: with strata every replicate keeps the 50/50 share -> zero width.
    values = [1.0] * 10 + [0.0] * 10
    strata = ["a"] * 10 + ["b"] * 10
    reps = bootstrap_means(values, strata, n_boot=200)
    assert np.allclose(reps, 0.5)
    assert np.std(bootstrap_means(values, None, n_boot=200)) > 0.05
    # unequal sizes: category mean (GenEval overall) differs from the pooled mean
    ci = mean_ci([1.0, 1.0, 1.0, 0.0], ["a", "a", "a", "b"], mean_of_strata=True)
    assert ci["mean"] == pytest.approx(0.5)
    assert mean_ci([1.0, 1.0, 1.0, 0.0], ["a", "a", "a", "b"])["mean"] == pytest.approx(0.75)


def test_paired_difference_cancels_prompt_difficulty():
    rng = np.random.default_rng(0)
    difficulty = rng.uniform(0, 1, 100)
    a, b = difficulty, difficulty + 0.1  # b is uniformly 0.1 better on the same prompts
    d = paired_difference_ci(a, b)
    assert d["mean"] == pytest.approx(0.1)
    assert d["ci_high"] - d["ci_low"] < 1e-9  # no variance left after pairing
    separate = mean_ci(b)["ci_high"] - mean_ci(b)["ci_low"]
    assert separate > 0.05
    with pytest.raises(ValueError, match="same prompts"):
        paired_difference_ci([1.0, 2.0], [1.0])


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="one value per prompt"):
        mean_ci(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="strata"):
        mean_ci([1.0, 2.0], ["a"])
    with pytest.raises(ValueError, match="level"):
        mean_ci([1.0], level=1.5)
    assert np.isnan(mean_ci([])["mean"])
