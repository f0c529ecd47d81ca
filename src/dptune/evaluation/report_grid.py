"""Image grids of a report: per prompt set, a few prompts (every category shown) x methods, the images of
each (prompt, method) side by side with the same seeds, framed by the judge's verdict.

Image records store their PNG as a path relative to the folder of the evaluation that wrote them
(:class:`ImageRoot`). A listed image whose file is missing is an error, never a silently empty cell.
"""

from __future__ import annotations

import base64
import html
import os
from dataclasses import dataclass
from pathlib import Path

from dptune.evaluation.report_tables import methods_with, verdict


class MissingImageError(FileNotFoundError):
    """An image record names a PNG that does not exist."""


@dataclass(frozen=True)
class ImageRoot:
    """Where image records' ``file`` paths start (``folder``) and which results.json listed them (for errors);
    ``sources`` maps a method name to its own results.json when results were merged from several."""

    folder: Path
    results_json: str
    sources: dict[str, str] | None = None

    def path(self, rec: dict, method: str, set_name: str) -> Path:
        """The PNG of ``rec``; raises :class:`MissingImageError` naming the file and its results.json."""
        # normalised: '<out>/../a/images/x.png' must not depend on <out> existing yet
        p = Path(os.path.normpath(self.folder / rec["file"]))
        if not p.is_file():
            listed = (self.sources or {}).get(method, self.results_json)
            raise MissingImageError(
                f"image {p} not found: listed by {listed} (method {method!r}, set "
                f"{set_name!r}); re-run that evaluation, or set 'image_root' in that results.json to the "
                "folder its image paths start from (relative to the results.json)"
            )
        return p


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
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _grid_data(methods: list[dict], set_name: str, n: int):
    """(methods with this set, images per prompt k, shown prompt indices, (method, prompt, j) -> record)."""
    have = methods_with(methods, set_name)
    if not have or not any("file" in r for r in have[0]["generative"][set_name]["images"]):
        return None
    recs0 = have[0]["generative"][set_name]["images"]
    lookup = {
        (m["name"], r["prompt_index"], r["j"]): r for m in have for r in m["generative"][set_name]["images"]
    }
    return have, len({r["j"] for r in recs0}), grid_prompt_indices(recs0, n), lookup


def _cell_records(m: dict, i: int, k: int, lookup: dict) -> list[dict]:
    recs = (lookup.get((m["name"], i, j)) for j in range(k))
    return [r for r in recs if r and "file" in r]


def grid_html(methods: list[dict], set_name: str, n: int, root: ImageRoot) -> str:
    """HTML grid; every image embedded as a data URI (missing file -> :class:`MissingImageError`)."""
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
            for r in _cell_records(m, i, k, lookup):
                cls, tip = verdict(r)
                uri = png_data_uri(root.path(r, m["name"], set_name))
                imgs.append(f"<img class='{cls}' src='{uri}' title='seed {r['seed']}: {html.escape(tip)}'>")
            cells.append("<td>" + "".join(imgs) + "</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table class='grid'>{head}{''.join(body)}</table>"


def grid_md(methods: list[dict], set_name: str, n: int, root: ImageRoot, out_dir: Path) -> str:
    """Markdown grid; image links relative to ``out_dir`` (where report.md is)."""
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
            for r in _cell_records(m, i, k, lookup):
                link = Path(os.path.relpath(root.path(r, m["name"], set_name), out_dir)).as_posix()
                mark = {"ok": " ✓", "bad": " ✗"}.get(verdict(r)[0], "")
                parts.append(f"![s{r['seed']}]({link}){mark}")
            cells.append(" ".join(parts))
        lines.append(f"| {r0['prompt']} ({r0['category']}) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
