"""Means with bootstrap confidence intervals, resampling *prompts* (not images).

Images of one prompt are not independent draws (same prompt, correlated success), so every interval here
resamples whole prompts: pass one value per prompt (e.g. the judge accuracy over its k images). With
``strata`` (e.g. categories) the bootstrap resamples prompts within each stratum, which keeps the category
shares fixed; ``category_mean`` is then the unweighted mean of the stratum means (GenEval's overall score).

Percentile bootstrap, numpy only, a fixed seed so reports are reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DEFAULT_N_BOOT = 2000
DEFAULT_LEVEL = 0.95


def _check(values: np.ndarray, n_boot: int, level: float) -> None:
    if values.ndim != 1:
        raise ValueError(f"bootstrap expects one value per prompt (1-D), got shape {values.shape}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")


def _strata_index(strata: Sequence[str] | None, n: int) -> list[np.ndarray]:
    if strata is None:
        return [np.arange(n)]
    if len(strata) != n:
        raise ValueError(f"got {n} values but {len(strata)} strata labels; pass one label per value")
    labels = np.asarray(list(strata), dtype=object)
    return [np.flatnonzero(labels == s) for s in dict.fromkeys(strata)]  # first-seen order


def bootstrap_means(
    values: Sequence[float],
    strata: Sequence[str] | None = None,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    mean_of_strata: bool = False,
) -> np.ndarray:
    """``n_boot`` bootstrap replicates of the mean -> (n_boot,).

    ``mean_of_strata``: each replicate is the unweighted mean of its stratum means instead of the pooled
    mean (identical when strata have equal sizes).
    """
    v = np.asarray(values, dtype=np.float64)
    _check(v, n_boot, 0.5)
    if v.size == 0:
        raise ValueError("cannot bootstrap an empty list of values")
    rng = np.random.default_rng(seed)
    groups = _strata_index(strata, v.size)
    sums = np.zeros(n_boot)
    means = np.zeros((len(groups), n_boot))
    for g, idx in enumerate(groups):
        draw = rng.integers(0, idx.size, size=(n_boot, idx.size))  # (n_boot, n_g) resampled prompt positions
        sample = v[idx][draw]  # (n_boot, n_g)
        sums += sample.sum(1)
        means[g] = sample.mean(1)
    return means.mean(0) if mean_of_strata else sums / v.size


def mean_ci(
    values: Sequence[float],
    strata: Sequence[str] | None = None,
    n_boot: int = DEFAULT_N_BOOT,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
    mean_of_strata: bool = False,
) -> dict[str, float]:
    """{mean, ci_low, ci_high, n} with a percentile bootstrap interval at ``level`` (default 95%)."""
    v = np.asarray(values, dtype=np.float64)
    _check(v, n_boot, level)
    if v.size == 0:
        return {"mean": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": 0}
    if mean_of_strata:
        groups = _strata_index(strata, v.size)
        point = float(np.mean([v[idx].mean() for idx in groups]))
    else:
        point = float(v.mean())
    reps = bootstrap_means(v, strata, n_boot, seed, mean_of_strata)
    lo, hi = np.quantile(reps, [(1 - level) / 2, 1 - (1 - level) / 2])
    return {"mean": point, "ci_low": float(lo), "ci_high": float(hi), "n": int(v.size)}


def paired_difference_ci(
    a: Sequence[float],
    b: Sequence[float],
    strata: Sequence[str] | None = None,
    n_boot: int = DEFAULT_N_BOOT,
    level: float = DEFAULT_LEVEL,
    seed: int = 0,
) -> dict[str, float]:
    """CI of mean(b) - mean(a) for two methods scored on the SAME prompts (and seeds).

    Both methods are resampled with the same prompt indices, so prompt difficulty cancels and the interval
    is much tighter than comparing two separate intervals.
    """
    va, vb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if va.shape != vb.shape:
        raise ValueError(f"paired comparison needs the same prompts: got {va.size} and {vb.size} values")
    return mean_ci(vb - va, strata, n_boot, level, seed)


def per_prompt_means(values: Sequence[float], prompt_ids: Sequence[int]) -> tuple[list[int], np.ndarray]:
    """Average per-image values over the images of each prompt -> (prompt ids in first-seen order, means)."""
    if len(values) != len(prompt_ids):
        raise ValueError(f"got {len(values)} values but {len(prompt_ids)} prompt ids")
    order = list(dict.fromkeys(prompt_ids))
    pos = {p: i for i, p in enumerate(order)}
    sums = np.zeros(len(order))
    counts = np.zeros(len(order))
    for v, p in zip(values, prompt_ids, strict=True):
        sums[pos[p]] += float(v)
        counts[pos[p]] += 1
    return order, sums / counts
