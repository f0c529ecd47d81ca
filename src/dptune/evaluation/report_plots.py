"""Matplotlib (Agg) figures of a results dict: per-category bars with CI whiskers, discriminative bars."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

POOLED = ("overall", "category_mean")  # summary entries over all categories: shown after the categories


def summary_columns(keys: list[str]) -> list[str]:
    """Categories in their order, then the pooled entries (a results.json read back has its keys sorted)."""
    return [k for k in keys if k not in POOLED] + [k for k in POOLED if k in keys]


def pyplot():
    """matplotlib.pyplot on the Agg backend (reports write files; no display is needed or assumed)."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def metric_scale(metric: str) -> float:
    """Judge verdicts are stored as 0/1: show them in percent; CLIP/BLIP scores are already 0-100."""
    return 100.0 if metric.split(".")[0] == "judge" else 1.0


def category_bars(methods: list[dict[str, Any]], set_name: str, metric: str, path: Path) -> Path | None:
    """Grouped bars: x = categories (+ overall), one bar per method, whiskers = CI."""
    blocks = [(m["name"], m["generative"].get(set_name, {}).get("summary", {}).get(metric)) for m in methods]
    blocks = [(n, b) for n, b in blocks if b]
    if not blocks:
        return None
    cats = [c for c in summary_columns(list(blocks[0][1])) if c != "category_mean"]
    scale = metric_scale(metric)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(cats) * max(1, len(blocks)) / 2, 3.2))
    width = 0.8 / len(blocks)
    x = np.arange(len(cats))
    for i, (name, b) in enumerate(blocks):
        mean = np.array([b[c]["mean"] if c in b else np.nan for c in cats]) * scale
        lo = np.array([b[c]["ci_low"] if c in b else np.nan for c in cats]) * scale
        hi = np.array([b[c]["ci_high"] if c in b else np.nan for c in cats]) * scale
        ax.bar(
            x + (i - (len(blocks) - 1) / 2) * width,
            mean,
            width,
            label=name,
            yerr=np.stack([mean - lo, hi - mean]),
            capsize=2,
        )
    ax.set_xticks(x, cats, fontsize=8)
    ax.set_ylabel(f"{metric} ({'%' if scale == 100 else 'score'})", fontsize=8)
    ax.set_title(f"{set_name}: {metric}, mean and 95% CI over prompts", fontsize=9)
    if scale == 100:
        ax.set_ylim(0, 100)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def discriminative_bars(methods: list[dict[str, Any]], path: Path) -> Path | None:
    """ITM overall accuracy and REC P@1 per method and set, with the chance levels as dashed lines."""
    rows = [
        (m["name"], s, r) for m in methods if m.get("discriminative") for s, r in m["discriminative"].items()
    ]
    if not rows:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    for ax, task, key, chance_key in (
        (axes[0], "itm", "overall", "chance_i2t"),
        (axes[1], "rec", "p_at_1", None),
    ):
        sel = [(n, s, r[task]) for n, s, r in rows if task in r]
        labels = [f"{n}\n{s}" for n, s, _ in sel]
        ax.bar(range(len(sel)), [r[key] for _, _, r in sel], color="tab:blue")
        for i, (_, _, r) in enumerate(sel):
            chance = r.get(chance_key) if chance_key else (r.get("chance_objects") or r.get("random_query"))
            if chance is not None:
                ax.hlines(chance, i - 0.4, i + 0.4, colors="k", linestyles="dashed")
        ax.set_xticks(range(len(sel)), labels, fontsize=7)
        ax.set_ylim(0, 100)
        ax.set_title("ITM overall accuracy (%)" if task == "itm" else "REC P@1, IoU>=0.5 (%)", fontsize=9)
    fig.suptitle("dashed: chance", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
