"""Reports of a results dict: ``report.md`` (images by relative path) and a self-contained ``report.html``
(every image and plot embedded as a base64 PNG), comparing several named methods side by side.

Per prompt set: one table per metric (methods x categories, mean [95% CI]), paired differences against the
first method (same prompts and seeds, bootstrap over prompts), FID / IS when computed, a bar plot, an image
grid aligned by seed across methods (green / red frame = judge verdict) and every image's verdict.
Discriminative results: ITM accuracy per direction and REC P@1 with their chance levels.
Tables: :mod:`~dptune.evaluation.report_tables`; image grids: :mod:`~dptune.evaluation.report_grid`.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

from dptune.evaluation.report_grid import (
    ImageRoot,
    MissingImageError,
    grid_html,
    grid_md,
    grid_prompt_indices,
    png_data_uri,
)
from dptune.evaluation.report_plots import category_bars, discriminative_bars, pyplot
from dptune.evaluation.report_tables import (
    Table,
    delta_table,
    disc_table,
    html_table,
    md_table,
    metric_tables,
    quality_table,
    verdict_table,
)

__all__ = [
    "ImageRoot",
    "MissingImageError",
    "Table",
    "check_images",
    "grid_prompt_indices",
    "html_table",
    "image_root",
    "load_results",
    "md_table",
    "merge_results",
    "png_data_uri",
    "pyplot",
    "write_report",
]


def load_results(path: str | os.PathLike) -> dict[str, Any]:
    from dptune.utils.io import load_json

    data = load_json(path)
    if not isinstance(data, dict) or data.get("format") != "dptune-eval-results":
        raise ValueError(f"{path} is not a dptune results.json (format 'dptune-eval-results')")
    return data


def image_root(results: dict[str, Any], out_dir: str | os.PathLike, default: str = ".") -> Path:
    """Folder the image records' ``file`` paths are relative to: ``results['image_root']`` (itself relative
    to the results' folder ``out_dir``, e.g. the demo's ``eval``), else ``default`` under ``out_dir``."""
    return Path(out_dir) / results.get("image_root", default)


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
        root = image_root(data, Path(p).parent)
        merged["config"] = merged["config"] or data.get("config", {})
        for m in data["methods"]:
            name, k = m["name"], 2
            while m["name"] in seen:
                m["name"] = f"{name}#{k}"
                k += 1
            seen.add(m["name"])
            m["results_json"] = str(p)  # named by a missing-image error
            for res in (m.get("generative") or {}).values():
                for rec in res.get("images", []):
                    if "file" in rec:
                        rec["file"] = os.path.relpath(root / rec["file"], out_dir)
            merged["methods"].append(m)
    return merged


# ---- the report ---------------------------------------------------------------------------------------
CSS = """body{font-family:sans-serif;margin:1.5em;max-width:1400px}
table{border-collapse:collapse;margin:.6em 0}
td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px;vertical-align:top} caption{text-align:left;
font-weight:bold;padding:4px 0} .grid img{width:128px;height:128px;image-rendering:pixelated;margin:1px;
border:3px solid #bbb} .grid img.ok{border-color:#2a2} .grid img.bad{border-color:#d22} td.p{max-width:260px}
details{margin:.5em 0} .plot{max-width:100%}"""


def _method_line(m: dict) -> str:
    """One settings line of a method: its options (registry spec ``{method, label, config}`` or the older
    flat spec) and the sampler its images came from."""
    s = m.get("spec") or {}
    gen = next(iter((m.get("generative") or {}).values()), {}).get("settings", {})
    if "config" in s:
        opts = ", ".join(f"{k}={v}" for k, v in s["config"].items() if v is not None)
        what = f"{s.get('method')}({opts})"
    else:
        what = f"model={s.get('model')} lora={s.get('lora')} adapter={s.get('adapter')} eta={s.get('eta')}"
    model = f" model={gen['model']}" if "model" in gen else ""
    return (f"{m['name']}: {what} | {gen.get('generator', '')}{model} steps={gen.get('steps')} "
            f"guidance={gen.get('guidance')}")


def _settings(results: dict) -> list[str]:
    cfg = results.get("config", {})
    lines = [f"created {results.get('created', '?')}"]
    # sampling steps / guidance are per method (resolved), listed on the method lines below
    keys = ("images_per_prompt", "seed", "prompts_per_category", "prompt_seed", "t", "noise_seed", "n_boot")
    lines.append(", ".join(f"{k}={cfg[k]}" for k in keys if k in cfg))
    return lines + [_method_line(m) for m in results["methods"]]


def _set_section(
    methods: list[dict], s: str, out: Path, root: ImageRoot, n_grid: int, n_boot: int
) -> tuple[list[str], list[str]]:
    """Markdown lines and HTML parts of one prompt set: tables, plot, image grid, verdicts."""
    first = next(m["generative"][s] for m in methods if s in (m.get("generative") or {}))
    head = f"{s}: {first['n_prompts']} prompts x {first['images_per_prompt']} images ({first['source']})"
    md, hb = [f"## {head}", ""], [f"<h2>{html.escape(head)}</h2>"]
    extra = (delta_table(methods, s, n_boot), quality_table(methods, s))
    for t in metric_tables(methods, s) + [t for t in extra if t]:
        md.append(md_table(t))
        hb.append(html_table(t))
    safe = s.replace(":", "_").replace("/", "_")
    plot = category_bars(methods, s, next(iter(first["summary"]), ""), out / "plots" / f"{safe}.png")
    if plot:
        md.append(f"![{s}](plots/{plot.name})\n")
        hb.append(f"<img class='plot' src='{png_data_uri(plot)}'>")
    md += ["### images (aligned by seed)", "", grid_md(methods, s, n_grid, root, out)]
    hb.append("<h3>images, aligned by seed (frame: judge verdict; hover for the reason)</h3>")
    hb.append(grid_html(methods, s, n_grid, root))
    verdicts = verdict_table(methods, s)
    if verdicts:
        hb.append(
            f"<details><summary>every image's verdict ({len(verdicts[2])} images)</summary>"
            f"{html_table(verdicts)}</details>"
        )
    return md, hb


def check_images(results: dict[str, Any], out_dir: str | os.PathLike,
                 image_dir: str | os.PathLike | None = None) -> ImageRoot:
    """The :class:`ImageRoot` of ``results`` (see :func:`write_report`), after checking that every record's PNG
    exists, shown in a grid or not; raises :class:`MissingImageError` naming the first missing one."""
    out = Path(out_dir)
    folder = Path(image_dir) if image_dir is not None else image_root(results, out)
    sources = {m["name"]: m["results_json"] for m in results["methods"] if "results_json" in m}
    root = ImageRoot(folder, str(out / "results.json"), sources)
    for m in results["methods"]:
        for set_name, res in (m.get("generative") or {}).items():
            for rec in res.get("images", []):
                if "file" in rec:
                    root.path(rec, m["name"], set_name)
    return root


def _set_names(methods: list[dict]) -> list[str]:
    return list(dict.fromkeys(s for m in methods for s in (m.get("generative") or {})))


def write_report(
    results: dict[str, Any],
    out_dir: str | os.PathLike,
    title: str = "dptune evaluation",
    grid_prompts: int | None = None,
    intro: list[tuple[str, str]] | None = None,
    image_dir: str | os.PathLike | None = None,
) -> dict[str, Path]:
    """Write ``report.md``, ``report.html`` and ``plots/*.png`` for ``results`` into ``out_dir``.

    ``intro``: extra sections shown first, as (markdown, html) pairs (e.g. the demo's summary and curves).
    ``image_dir``: the folder the image records' paths are relative to (the evaluation's out dir); default
    :func:`image_root` of ``results`` under ``out_dir``. An image record whose PNG is missing raises
    :class:`MissingImageError` before anything is written.
    """
    from dptune.utils.io import atomic_write

    out = Path(out_dir)
    methods = results["methods"]
    root = check_images(results, out, image_dir)  # before anything is written
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
        m_lines, h_parts = _set_section(methods, s, out, root, n_grid, n_boot)
        md += m_lines
        hb += h_parts
    disc: Table | None = disc_table(methods)
    if disc:
        md += ["## discriminative (ITM / REC)", "", md_table(disc)]
        hb += ["<h2>discriminative (ITM / REC)</h2>", html_table(disc)]
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
