"""One comparison of every method: judge accuracy per category with Wilson intervals, seconds per image, training
time and trainable parameters -- from an evaluation's results (same prompts, seeds and judge for every method).

Written as ``comparison.json``, ``comparison.csv`` and ``comparison.md``; :func:`format_table` prints it.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from dptune.utils.stats import wilson

LEVEL = 0.95
ORDER = ("colour", "count", "binding", "relation")  # the failure kinds the table is read by, first when present


def _judged(records: list[dict]) -> dict[str, tuple[int, int]]:
    """{category: (correct, images)} plus 'overall', from judge verdicts (score 1 = the prompt holds)."""
    counts: dict[str, list[int]] = {}
    for r in records:
        judge = r.get("metrics", {}).get("judge")
        if judge is None:
            continue
        for key in (r.get("category", "all"), "overall"):
            c = counts.setdefault(key, [0, 0])
            c[0] += int(round(float(judge["score"])))
            c[1] += 1
    return {k: (v[0], v[1]) for k, v in counts.items()}


def comparison_rows(results: dict) -> list[dict[str, Any]]:
    """One row per (method, prompt set) that the judge scored."""
    rows = []
    for m in results["methods"]:
        cost = m.get("cost") or {}
        for set_name, res in (m.get("generative") or {}).items():
            judged = _judged(res["images"])
            if not judged:
                continue
            cells = {}
            for cat, (k, n) in judged.items():
                lo, hi = wilson(k, n)
                cells[cat] = {"accuracy": k / n, "correct": k, "n": n, "ci_low": lo, "ci_high": hi}
            rows.append({"method": m["name"], "set": set_name, "categories": cells,
                         "seconds_per_image": res.get("seconds_per_image"),
                         "train_seconds": cost.get("train_seconds"), "trainable_params": cost.get("trainable_params")})
    return rows


def _categories(rows: list[dict]) -> list[str]:
    found = {c for r in rows for c in r["categories"]} - {"overall"}
    return [*(c for c in ORDER if c in found), *sorted(found - set(ORDER)), "overall"]


def _cell(c: dict | None) -> str:
    if c is None:
        return "-"
    return f"{100 * c['accuracy']:.1f} [{100 * c['ci_low']:.0f}-{100 * c['ci_high']:.0f}]"


def _num(v, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Header and string cells: accuracy % [95% Wilson interval] per category, then the costs."""
    cats = _categories(rows)
    header = ["method", "set", *cats, "s/image", "train s", "trained params"]
    body = [[r["method"], r["set"], *[_cell(r["categories"].get(c)) for c in cats],
             _num(r["seconds_per_image"], ".3f"), _num(r["train_seconds"], ".0f"),
             _num(r["trainable_params"], ",")] for r in rows]
    return header, body


def format_table(rows: list[dict]) -> str:
    """A Markdown table (also readable in a terminal)."""
    header, body = table(rows)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])


def write_comparison(results: dict, out_dir: str | Path) -> dict[str, Path]:
    """comparison.json / .csv / .md in ``out_dir`` (written atomically); returns their paths."""
    from dptune.utils.io import atomic_write, save_json

    out = Path(out_dir)
    rows = comparison_rows(results)
    header, body = table(rows)
    buf = io.StringIO()
    csv.writer(buf).writerows([header, *body])
    paths = {"json": out / "comparison.json", "csv": out / "comparison.csv", "md": out / "comparison.md"}
    save_json(paths["json"], {"level": LEVEL, "interval": "wilson", "rows": rows})
    atomic_write(paths["csv"], lambda tmp: Path(tmp).write_text(buf.getvalue(), encoding="utf-8"))
    md = f"# comparison\n\nJudge accuracy % [{LEVEL:.0%} Wilson interval] per category.\n\n{format_table(rows)}\n"
    atomic_write(paths["md"], lambda tmp: Path(tmp).write_text(md, encoding="utf-8"))
    return paths
