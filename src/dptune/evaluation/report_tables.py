"""Tables of a results dict, and their two renderings: Markdown (``report.md``) and HTML (``report.html``).

A table is ``(caption, header, rows)`` of strings; every table of a report goes through :func:`md_table` and
:func:`html_table`, so report.html never shows Markdown table syntax.
"""

from __future__ import annotations

import html

from dptune.evaluation.report_plots import metric_scale, summary_columns
from dptune.evaluation.stats import paired_difference_ci, per_prompt_means

Table = tuple[str, list[str], list[list[str]]]  # caption, header, rows


def md_table(t: Table) -> str:
    """Markdown table with its caption in bold above it (no caption line when the caption is empty)."""
    cap, head, rows = t
    lines = [f"**{cap}**", ""] if cap else []
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def html_table(t: Table) -> str:
    """HTML <table>; every cell escaped."""
    cap, head, rows = t
    caption = f"<caption>{html.escape(cap)}</caption>" if cap else ""
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table>{caption}<tr>{th}</tr>{trs}</table>"


def _ci(c: dict[str, float] | None, scale: float) -> str:
    if not c or c.get("n", 0) == 0:
        return "-"
    return f"{c['mean'] * scale:.1f} [{c['ci_low'] * scale:.1f}, {c['ci_high'] * scale:.1f}]"


def methods_with(methods: list[dict], set_name: str) -> list[dict]:
    """The methods that have generative results on ``set_name``, in order."""
    return [m for m in methods if set_name in (m.get("generative") or {})]


def metric_tables(methods: list[dict], set_name: str) -> list[Table]:
    """One table per metric: methods x categories, mean [95% CI]."""
    have = methods_with(methods, set_name)
    metrics = list(dict.fromkeys(k for m in have for k in m["generative"][set_name]["summary"]))
    tables = []
    for metric in metrics:
        blocks = [m["generative"][set_name]["summary"].get(metric, {}) for m in have]
        cats = summary_columns(list(dict.fromkeys(c for b in blocks for c in b)))
        scale = metric_scale(metric)
        rows = [[m["name"]] + [_ci(b.get(c), scale) for c in cats] for m, b in zip(have, blocks, strict=True)]
        unit = " (% of images correct)" if scale == 100 else ""
        tables.append((f"{metric}{unit}: mean [95% CI over prompts]", ["method"] + cats, rows))
    return tables


def _per_prompt(res: dict, metric: str) -> tuple[list, list, list]:
    """(prompt ids, per-prompt means, categories) of a metric key ``name`` or ``name.field``."""
    name, _, fld = metric.partition(".")
    recs = res["images"]
    ids, means = per_prompt_means(
        [r["metrics"][name][fld or "score"] for r in recs], [r["prompt_index"] for r in recs]
    )
    cat = {r["prompt_index"]: r["category"] for r in recs}
    return ids, list(means), [cat[i] for i in ids]


def delta_table(methods: list[dict], set_name: str, n_boot: int) -> Table | None:
    """Paired differences against the first method (same prompts and seeds, bootstrap over prompts)."""
    have = methods_with(methods, set_name)
    if len(have) < 2:
        return None
    ref = have[0]["generative"][set_name]
    key = [(r["prompt_index"], r["seed"]) for r in ref["images"]]
    metrics = list(ref["summary"])
    rows = []
    for m in have[1:]:
        res = m["generative"][set_name]
        if [(r["prompt_index"], r["seed"]) for r in res["images"]] != key:
            rows.append([m["name"]] + ["not paired (different prompts/seeds)"] * len(metrics))
            continue
        cells = []
        for metric in metrics:
            if metric not in res["summary"]:
                cells.append("-")
                continue
            _, a, cats = _per_prompt(ref, metric)
            _, b, _ = _per_prompt(res, metric)
            d, s = paired_difference_ci(a, b, cats, n_boot=n_boot), metric_scale(metric)
            cells.append(f"{d['mean'] * s:+.1f} [{d['ci_low'] * s:+.1f}, {d['ci_high'] * s:+.1f}]")
        rows.append([m["name"]] + cells)
    return (
        f"overall difference vs {have[0]['name']} (paired over the same prompts and seeds, 95% CI)",
        ["method"] + metrics,
        rows,
    )


def quality_table(methods: list[dict], set_name: str) -> Table | None:
    """FID / IS of the methods that computed them."""
    rows = []
    for m in methods:
        q = (m.get("generative") or {}).get(set_name, {}).get("quality")
        if q:
            fid = f"{q['fid']:.2f}" if "fid" in q else "-"
            is_ = f"{q['is_mean']:.2f} +- {q['is_std']:.2f}" if "is_mean" in q else "-"
            rows.append([m["name"], fid, is_, str(q.get("n_generated", "-")), str(q.get("n_real", "-"))])
    return ("image quality", ["method", "FID", "IS", "generated", "real"], rows) if rows else None


DISC_HEADER = [
    "method",
    "set",
    "ITM I->T",
    "ITM T->I",
    "ITM overall",
    "ITM chance",
    "REC P@1 (IoU>=.5)",
    "REC P@1 (GIoU>=.5)",
    "REC random query",
    "REC 1/#objects",
    "t",
]


def _pct(d: dict, k: str) -> str:
    return f"{d[k]:.1f}" if d.get(k) is not None else "-"


def disc_table(methods: list[dict]) -> Table | None:
    """ITM accuracy per direction and REC P@1, with their chance levels, per method and set."""
    rows = []
    for m in methods:
        for s, r in (m.get("discriminative") or {}).items():
            itm, rec = r.get("itm", {}), r.get("rec", {})
            rows.append(
                [m["name"], s]
                + [_pct(itm, k) for k in ("i2t", "t2i", "overall", "chance_i2t")]
                + [_pct(rec, k) for k in ("p_at_1", "p_at_1_giou", "random_query", "chance_objects")]
                + [str(r.get("t"))]
            )
    return ("discriminative: accuracy in %", DISC_HEADER, rows) if rows else None


def verdict(rec: dict) -> tuple[str, str]:
    """(css class, tooltip) of an image from its judge verdict or its scores."""
    mets = rec["metrics"]
    if "judge" in mets:
        j = mets["judge"]
        return ("ok" if j["correct"] else "bad"), ("correct" if j["correct"] else f"wrong: {j['reason']}")
    return "neutral", ", ".join(f"{k}={v['score']:.1f}" for k, v in mets.items())


def verdict_table(methods: list[dict], set_name: str) -> Table | None:
    """Every image's verdict, one row per (prompt, seed), one column per method."""
    have = methods_with(methods, set_name)
    if not have:
        return None
    lookup = {
        (m["name"], r["prompt_index"], r["j"]): r for m in have for r in m["generative"][set_name]["images"]
    }
    rows = []
    for r0 in have[0]["generative"][set_name]["images"]:
        row = [str(r0["prompt_index"]), r0["prompt"], str(r0["seed"])]
        for m in have:
            r = lookup.get((m["name"], r0["prompt_index"], r0["j"]))
            row.append(verdict(r)[1] if r else "-")
        rows.append(row)
    return ("every image's verdict", ["#", "prompt", "seed"] + [m["name"] for m in have], rows)
