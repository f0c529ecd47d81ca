"""Reports of a results dict: ``report.md`` (images by relative path) and a self-contained ``report.html``
(images and plots embedded as base64 PNG), comparing several named methods side by side.

Per prompt set: one table per metric (methods x categories, mean [95% CI]), paired differences against the
first method (same prompts and seeds, bootstrap over prompts), FID / IS when computed, a bar plot, an image
grid aligned by seed across methods (green / red frame = judge verdict) and every image's verdict.
Discriminative results: ITM accuracy per direction and REC P@1 with their chance levels.
"""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path
from typing import Any

from dptune.evaluation.report_plots import category_bars, discriminative_bars, metric_scale
from dptune.evaluation.stats import paired_difference_ci, per_prompt_means

Table = tuple[str, list[str], list[list[str]]]  # caption, header, rows


def load_results(path: str | os.PathLike) -> dict[str, Any]:
    from dptune.utils.io import load_json

    data = load_json(path)
    if not isinstance(data, dict) or data.get("format") != "dptune-eval-results":
        raise ValueError(f"{path} is not a dptune results.json (format 'dptune-eval-results')")
    return data


def merge_results(paths: list[str | os.PathLike], out_dir: str | os.PathLike) -> dict[str, Any]:
    """Methods of several results.json files in one dict; image paths re-rooted at ``out_dir``."""
    merged: dict[str, Any] = {
        "format": "dptune-eval-results",
        "version": 1,
        "config": {},
        "methods": [],
        "merged_from": [str(p) for p in paths],
    }
    seen: set[str] = set()
    for p in paths:
        data = load_results(p)
        merged["config"] = merged["config"] or data.get("config", {})
        for m in data["methods"]:
            name, k = m["name"], 2
            while m["name"] in seen:
                m["name"] = f"{name}#{k}"
                k += 1
            seen.add(m["name"])
            for res in m.get("generative", {}).values():
                for rec in res.get("images", []):
                    if "file" in rec:
                        rec["file"] = os.path.relpath(Path(p).parent / rec["file"], out_dir)
            merged["methods"].append(m)
    return merged


# ---- tables -----------------------------------------------------------------------------------------
def _ci(c: dict[str, float] | None, scale: float) -> str:
    if not c or c.get("n", 0) == 0:
        return "-"
    return f"{c['mean'] * scale:.1f} [{c['ci_low'] * scale:.1f}, {c['ci_high'] * scale:.1f}]"


def _set_names(methods: list[dict]) -> list[str]:
    return list(dict.fromkeys(s for m in methods for s in m.get("generative", {})))


def _metric_tables(methods: list[dict], set_name: str) -> list[Table]:
    have = [m for m in methods if set_name in m.get("generative", {})]
    metrics = list(dict.fromkeys(k for m in have for k in m["generative"][set_name]["summary"]))
    tables = []
    for metric in metrics:
        cats = list(
            dict.fromkeys(c for m in have for c in m["generative"][set_name]["summary"].get(metric, {}))
        )
        scale = metric_scale(metric)
        rows = [
            [m["name"]]
            + [_ci(m["generative"][set_name]["summary"].get(metric, {}).get(c), scale) for c in cats]
            for m in have
        ]
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


def _delta_table(methods: list[dict], set_name: str, n_boot: int) -> Table | None:
    have = [m for m in methods if set_name in m.get("generative", {})]
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


def _quality_table(methods: list[dict], set_name: str) -> Table | None:
    rows = []
    for m in methods:
        q = m.get("generative", {}).get(set_name, {}).get("quality")
        if q:
            fid = f"{q['fid']:.2f}" if "fid" in q else "-"
            is_ = f"{q['is_mean']:.2f} +- {q['is_std']:.2f}" if "is_mean" in q else "-"
            rows.append([m["name"], fid, is_, str(q.get("n_generated", "-")), str(q.get("n_real", "-"))])
    return ("image quality", ["method", "FID", "IS", "generated", "real"], rows) if rows else None


def _disc_table(methods: list[dict]) -> Table | None:
    rows = []
    for m in methods:
        for s, r in (m.get("discriminative") or {}).items():
            itm, rec = r.get("itm", {}), r.get("rec", {})

            def f(d: dict, k: str) -> str:
                return f"{d[k]:.1f}" if d.get(k) is not None else "-"

            chance_rec = rec.get("chance_objects")
            rows.append(
                [
                    m["name"],
                    s,
                    f(itm, "i2t"),
                    f(itm, "t2i"),
                    f(itm, "overall"),
                    f(itm, "chance_i2t"),
                    f(rec, "p_at_1"),
                    f(rec, "p_at_1_giou"),
                    f(rec, "random_query"),
                    f"{chance_rec:.1f}" if chance_rec is not None else "-",
                    str(r.get("t")),
                ]
            )
    header = [
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
    return ("discriminative: accuracy in %", header, rows) if rows else None


def _md_table(t: Table) -> str:
    cap, head, rows = t
    lines = [f"**{cap}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _html_table(t: Table) -> str:
    cap, head, rows = t
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><caption>{html.escape(cap)}</caption><tr>{th}</tr>{trs}</table>"


# ---- image grids ----------------------------------------------------------------------------------------
def grid_prompt_indices(records: list[dict], n: int) -> list[int]:
    """Up to ``n`` prompt indices, round-robin over categories so every category is shown."""
    by_cat: dict[str, list[int]] = {}
    for r in records:
        lst = by_cat.setdefault(r["category"], [])
        if r["prompt_index"] not in lst:
            lst.append(r["prompt_index"])
    out: list[int] = []
    while len(out) < n and any(by_cat.values()):
        for lst in by_cat.values():
            if lst and len(out) < n:
                out.append(lst.pop(0))
    return out


def png_data_uri(path: Path) -> str:
    """A PNG file as a data: URI, so a report.html carries its images and plots."""
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _verdict(rec: dict) -> tuple[str, str]:
    """(css class, tooltip) of an image from its judge verdict or its scores."""
    mets = rec["metrics"]
    if "judge" in mets:
        j = mets["judge"]
        return ("ok" if j["correct"] else "bad"), ("correct" if j["correct"] else f"wrong: {j['reason']}")
    return "neutral", ", ".join(f"{k}={v['score']:.1f}" for k, v in mets.items())


def _grid_data(methods: list[dict], set_name: str, n: int):
    """(methods with this set, images per prompt k, shown prompt indices, (method, prompt, j) -> record)."""
    have = [m for m in methods if set_name in m.get("generative", {})]
    if not have or not any("file" in r for r in have[0]["generative"][set_name]["images"]):
        return None
    recs0 = have[0]["generative"][set_name]["images"]
    lookup = {
        (m["name"], r["prompt_index"], r["j"]): r for m in have for r in m["generative"][set_name]["images"]
    }
    return have, len({r["j"] for r in recs0}), grid_prompt_indices(recs0, n), lookup


def _grid_html(methods: list[dict], set_name: str, n: int, out_dir: Path) -> str:
    data = _grid_data(methods, set_name, n)
    if data is None:
        return ""
    have, k, idx, lookup = data
    head = (
        "<tr><th>prompt</th>"
        + "".join(f"<th>{html.escape(m['name'])}<br><small>j = 0..{k - 1}</small></th>" for m in have)
        + "</tr>"
    )
    body = []
    for i in idx:
        r0 = lookup[(have[0]["name"], i, 0)]
        cells = [
            f"<td class='p'>{html.escape(r0['prompt'])}<br><small>{html.escape(r0['category'])}, seeds "
            f"{r0['seed']}..{r0['seed'] + k - 1}</small></td>"
        ]
        for m in have:
            imgs = []
            for j in range(k):
                r = lookup.get((m["name"], i, j))
                if r and "file" in r and (out_dir / r["file"]).is_file():
                    cls, tip = _verdict(r)
                    imgs.append(
                        f"<img class='{cls}' src='{png_data_uri(out_dir / r['file'])}' "
                        f"title='seed {r['seed']}: {html.escape(tip)}'>"
                    )
            cells.append("<td>" + "".join(imgs) + "</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table class='grid'>{head}{''.join(body)}</table>"


def _grid_md(methods: list[dict], set_name: str, n: int) -> str:
    data = _grid_data(methods, set_name, n)
    if data is None:
        return ""
    have, k, idx, lookup = data
    lines = ["| prompt | " + " | ".join(m["name"] for m in have) + " |", "|" + "---|" * (len(have) + 1)]
    for i in idx:
        r0 = lookup[(have[0]["name"], i, 0)]
        cells = []
        for m in have:
            parts = []
            for j in range(k):
                r = lookup.get((m["name"], i, j))
                if r and "file" in r:
                    mark = {"ok": " ✓", "bad": " ✗"}.get(_verdict(r)[0], "")
                    parts.append(f"![s{r['seed']}]({r['file']}){mark}")
            cells.append(" ".join(parts))
        lines.append(f"| {r0['prompt']} ({r0['category']}) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _verdict_rows(methods: list[dict], set_name: str) -> Table | None:
    have = [m for m in methods if set_name in m.get("generative", {})]
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
            row.append(_verdict(r)[1] if r else "-")
        rows.append(row)
    return ("every image's verdict", ["#", "prompt", "seed"] + [m["name"] for m in have], rows)


# ---- the report ---------------------------------------------------------------------------------------
CSS = """body{font-family:sans-serif;margin:1.5em;max-width:1400px}
table{border-collapse:collapse;margin:.6em 0}
td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px;vertical-align:top} caption{text-align:left;
font-weight:bold;padding:4px 0} .grid img{width:64px;height:64px;image-rendering:pixelated;margin:1px;
border:3px solid #bbb} .grid img.ok{border-color:#2a2} .grid img.bad{border-color:#d22} td.p{max-width:260px}
details{margin:.5em 0} .plot{max-width:100%}"""


def _settings(results: dict) -> list[str]:
    cfg = results.get("config", {})
    lines = [f"created {results.get('created', '?')}"]
    # sampling steps / guidance are per method (resolved), listed on the method lines below
    keys = ("images_per_prompt", "seed", "prompts_per_category", "prompt_seed", "t", "noise_seed", "n_boot")
    lines.append(", ".join(f"{k}={cfg[k]}" for k in keys if k in cfg))
    for m in results["methods"]:
        s = m.get("spec", {})
        gen = next(iter(m.get("generative", {}).values()), {}).get("settings", {})
        lines.append(
            f"{m['name']}: model={s.get('model')} lora={s.get('lora')} adapter={s.get('adapter')} "
            f"eta={s.get('eta')} | {gen.get('generator', '')} steps={gen.get('steps')} "
            f"guidance={gen.get('guidance')}"
        )
    return lines


def _set_section(
    methods: list[dict], s: str, out: Path, n_grid: int, n_boot: int
) -> tuple[list[str], list[str]]:
    """Markdown lines and HTML parts of one prompt set: tables, plot, image grid, verdicts."""
    first = next(m["generative"][s] for m in methods if s in m.get("generative", {}))
    head = f"{s}: {first['n_prompts']} prompts x {first['images_per_prompt']} images ({first['source']})"
    md, hb = [f"## {head}", ""], [f"<h2>{html.escape(head)}</h2>"]
    extra = (_delta_table(methods, s, n_boot), _quality_table(methods, s))
    for t in _metric_tables(methods, s) + [t for t in extra if t]:
        md.append(_md_table(t))
        hb.append(_html_table(t))
    safe = s.replace(":", "_").replace("/", "_")
    plot = category_bars(methods, s, next(iter(first["summary"]), ""), out / "plots" / f"{safe}.png")
    if plot:
        md.append(f"![{s}](plots/{plot.name})\n")
        hb.append(f"<img class='plot' src='{png_data_uri(plot)}'>")
    md += ["### images (aligned by seed)", "", _grid_md(methods, s, n_grid)]
    hb.append("<h3>images, aligned by seed (frame: judge verdict; hover for the reason)</h3>")
    hb.append(_grid_html(methods, s, n_grid, out))
    verdicts = _verdict_rows(methods, s)
    if verdicts:
        hb.append(
            f"<details><summary>every image's verdict ({len(verdicts[2])} images)</summary>"
            f"{_html_table(verdicts)}</details>"
        )
    return md, hb


def write_report(
    results: dict[str, Any],
    out_dir: str | os.PathLike,
    title: str = "dptune evaluation",
    grid_prompts: int | None = None,
    intro: list[tuple[str, str]] | None = None,
) -> dict[str, Path]:
    """Write ``report.md``, ``report.html`` and ``plots/*.png`` for ``results`` into ``out_dir``.

    ``intro``: extra sections shown first, as (markdown, html) pairs (e.g. the demo's summary and curves).
    """
    from dptune.utils.io import atomic_write

    out = Path(out_dir)
    methods = results["methods"]
    n_grid = grid_prompts or results.get("config", {}).get("grid_prompts", 8)
    n_boot = int(results.get("config", {}).get("n_boot", 2000))
    settings = _settings(results)
    md = [f"# {title}", ""]
    hb = [f"<h1>{html.escape(title)}</h1>"]
    for sec_md, sec_html in intro or []:
        md.append(sec_md)
        hb.append(sec_html)
    md += ["## settings", "", *[f"- {ln}" for ln in settings], ""]
    hb.append("<h2>settings</h2><ul>" + "".join(f"<li>{html.escape(ln)}</li>" for ln in settings) + "</ul>")
    for s in _set_names(methods):
        m_lines, h_parts = _set_section(methods, s, out, n_grid, n_boot)
        md += m_lines
        hb += h_parts
    disc = _disc_table(methods)
    if disc:
        md += ["## discriminative (ITM / REC)", "", _md_table(disc)]
        hb += ["<h2>discriminative (ITM / REC)</h2>", _html_table(disc)]
        plot = discriminative_bars(methods, out / "plots" / "discriminative.png")
        if plot:
            md.append("![discriminative](plots/discriminative.png)\n")
            hb.append(f"<img class='plot' src='{png_data_uri(plot)}'>")
    page = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{CSS}</style></head><body>{''.join(hb)}</body></html>"
    )
    paths = {"md": out / "report.md", "html": out / "report.html"}
    atomic_write(paths["md"], lambda tmp: Path(tmp).write_text("\n".join(md), encoding="utf-8"))
    atomic_write(paths["html"], lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
    return paths
