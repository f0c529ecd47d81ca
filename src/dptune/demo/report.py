"""The demo's report: a plain-language summary, a results table by category, training curves, then the
evaluation report (image grids with the judge's verdicts, CIs, ITM/REC).

Every table is built once as ``(caption, header, rows)`` and rendered twice: Markdown for report.md, an HTML
<table> for report.html. Checks of a written report: :mod:`dptune.demo.report_checks`.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from dptune.demo.names import BASE, DPT, DPT_SC, EVAL_DIR, GROUNDED_SC, SC_CURVE_PREFIX
from dptune.demo.report_checks import rejudge_images, report_image_count
from dptune.evaluation.report_tables import Table, html_table, md_table

__all__ = ["judge_table", "rejudge_images", "relation_breakdown", "report_image_count", "summary_lines",
           "write_demo_report"]

CATEGORIES = ("colour", "count", "binding", "relation")
SPLITS = {"shapesworld-id": "ID", "shapesworld-ood": "OOD"}


def _md_lines(t: Table) -> list[str]:
    """The Markdown table's lines without the caption (the demo's sections say what a table holds)."""
    return md_table(("", t[1], t[2])).rstrip("\n").split("\n")


def judge_table(results: dict) -> tuple[list[str], list[list[str]], dict]:
    """Rows: method x split, columns: judge accuracy (%) per category + overall. Also returns the raw means."""
    header = ["method", "split", *CATEGORIES, "overall"]
    rows, means = [], {}
    for m in results["methods"]:
        for set_name, split in SPLITS.items():
            res = (m.get("generative") or {}).get(set_name)
            if not res:
                continue
            block = res["summary"]["judge"]
            vals = {c: block[c]["mean"] for c in (*CATEGORIES, "overall") if c in block}
            means[m["name"], split] = vals
            rows.append([m["name"], split, *[f"{100 * vals[c]:.1f}" if c in vals else "-"
                                             for c in (*CATEGORIES, "overall")]])
    return header, rows, means


def summary_lines(results: dict, means: dict) -> list[str]:
    """What the numbers say, computed from them (never hard-coded)."""
    lines = []
    for split in ("ID", "OOD"):
        base, dpt, sc = (means.get((n, split)) for n in (BASE, DPT, DPT_SC))
        if not (base and dpt and sc):
            continue
        weakest = min(CATEGORIES, key=lambda c: base.get(c, 1.0))
        d_dpt, d_sc = 100 * (dpt[weakest] - base[weakest]), 100 * (sc[weakest] - base[weakest])
        d_col = 100 * (sc["colour"] - base["colour"])
        lines.append(
            f"{split}: the base model's weakest category is **{weakest}** ({100 * base[weakest]:.1f}%). "
            f"DPT changes it by {d_dpt:+.1f} points, DPT + self-correction by {d_sc:+.1f} points; "
            f"overall {100 * base['overall']:.1f}% -> {100 * dpt['overall']:.1f}% (DPT) -> "
            f"{100 * sc['overall']:.1f}% (DPT + SC); colour {d_col:+.1f} points with DPT + SC.")
        gsc = means.get((GROUNDED_SC, split))
        if gsc:
            lines.append(
                f"{split}, DPT + grounded SC (an extension, not the paper's Eq. 9: it corrects relation prompts "
                f"only, on the REC boxes): {weakest} {100 * (gsc[weakest] - base[weakest]):+.1f} points, colour "
                f"{100 * (gsc['colour'] - base['colour']):+.1f}, overall {100 * gsc['overall']:.1f}%.")
    for m in results["methods"]:
        if m["name"].endswith("+sc") or m["name"] == GROUNDED_SC or m["name"].startswith(SC_CURVE_PREFIX):
            continue
        for set_name, r in (m.get("discriminative") or {}).items():
            itm, rec = r.get("itm", {}), r.get("rec", {})
            if itm and rec:
                lines.append(
                    f"{m['name']} on {SPLITS.get(set_name, set_name)}: ITM {itm['overall']:.1f}% "
                    f"(chance {itm['chance_i2t']:.0f}%), REC P@1 {rec['p_at_1']:.1f}% "
                    f"(1/#objects {rec['chance_objects']:.1f}%).")
    return lines


def text_check_table(results: dict) -> tuple[Table | None, list[str]]:
    """The text-encoder check (pooled cos / hidden diff per edit, base vs DPT) as a table, plus findings."""
    check = results.get("demo", {}).get("text_check") or {}
    base, dpt = check.get("base"), check.get("dpt")
    if not base:
        return None, []
    header = ["edit", "base: pooled cos", "base: token-state diff", "DPT: pooled cos", "DPT: token-state diff"]
    rows = []
    for edit, r in base.items():
        d = (dpt or {}).get(edit, {})
        rows.append([edit, f"{r['pooled_cos']:.4f}", f"{r['hidden_rel_diff']:.3f}",
                     f"{d.get('pooled_cos', float('nan')):.4f}", f"{d.get('hidden_rel_diff', float('nan')):.3f}"])
    from dptune.evaluation.text_check import NEAR_IDENTICAL_COS

    blind = [e for e, r in base.items() if r["near_identical"] >= 0.9]
    others = [r["hidden_rel_diff"] for e, r in base.items() if e not in blind]
    versus = f", vs {min(others):.3f} or more for the other edits" if others else ""
    findings = [f"The base text encoder embeds a caption and its '{e}' edit almost identically in "
                f"{100 * base[e]['near_identical']:.0f}% of pairs (pooled cos > {NEAR_IDENTICAL_COS}; token "
                f"states differ by {base[e]['hidden_rel_diff']:.3f} relative{versus}). The U-Net and the "
                "matching score see the same text for both captions, so no part of DPT that leaves the text "
                "encoder frozen can prefer one over the other." for e in blind]
    return ("text encoder: caption vs its edit", header, rows), findings


def relation_table(results: dict) -> Table | None:
    """Why relation images fail, per method and split -- an object is missing, or both are there and the
    stated relation / its opposite / neither holds (from the judge's detected objects)."""
    from dptune.shapesworld.grammar import Obj, parse_prompt
    from dptune.shapesworld.truth import relation_outcome

    header = ["method", "split", "images", "an object missing", "both found", "relation holds", "opposite holds"]
    rows = []
    for m in results["methods"]:
        for set_name, split in SPLITS.items():
            images = ((m.get("generative") or {}).get(set_name) or {}).get("images", [])
            records = [(parse_prompt(r["prompt"]).spec, r) for r in images]
            records = [(spec, r) for spec, r in records if spec.category == "relation"]
            if not records:
                continue
            counts = dict.fromkeys(("missing", "both", "holds", "opposite"), 0)
            for spec, r in records:
                found = [Obj(c, s, tuple(box)) for c, s, box in r["metrics"]["judge"]["found"]]
                outcome = relation_outcome(spec, found)
                if outcome is None:
                    counts["missing"] += 1
                    continue
                for key, hit in zip(("both", "holds", "opposite"), outcome, strict=True):
                    counts[key] += hit
            rows.append([m["name"], split, str(len(records)), *(str(counts[k]) for k in counts)])
    return ("relation failures (images)", header, rows) if rows else None


def relation_breakdown(results: dict) -> list[str]:
    """:func:`relation_table` as Markdown lines (header, separator, one line per method and split)."""
    t = relation_table(results)
    return _md_lines(t) if t else []


def _eta(m: dict) -> float:
    """Self-correction strength of a method entry (registry spec ``{method, config}`` or the older flat one;
    methods without the option, like dpt, have eta 0)."""
    spec = m.get("spec") or {}
    return float((spec["config"] if "config" in spec else spec).get("eta") or 0.0)


def sc_curve_points(results: dict, means: dict) -> dict[str, list[tuple[float, dict]]]:
    """Per split, (eta, judge means) of DPT (eta 0), DPT + SC and the extra ``--sc-curve`` strengths, sorted by
    eta; empty unless the run asked for extra strengths."""
    names = [m["name"] for m in results["methods"]]
    if not any(n.startswith(SC_CURVE_PREFIX) for n in names):
        return {}
    points: dict[str, list[tuple[float, dict]]] = {}
    for m in results["methods"]:
        if m["name"] in (DPT, DPT_SC) or m["name"].startswith(SC_CURVE_PREFIX):
            for split in SPLITS.values():
                if (m["name"], split) in means:
                    points.setdefault(split, []).append((_eta(m), means[m["name"], split]))
    return {split: sorted(p, key=lambda x: x[0]) for split, p in points.items()}


def sc_curve_section(points: dict, out: Path) -> tuple[Table, Path]:
    """Table and plot (``plots/sc_curve.png``) of judge accuracy against self-correction strength."""
    from dptune.evaluation.report_plots import pyplot

    plt = pyplot()
    cols = (*CATEGORIES, "overall")
    rows = []
    fig, axes = plt.subplots(1, len(points), figsize=(5 * len(points), 3.2), squeeze=False)
    for ax, (split, pts) in zip(axes[0], points.items(), strict=True):
        etas = [e for e, _ in pts]
        for c in cols:
            ax.plot(etas, [100 * v[c] for _, v in pts], marker="o", label=c, lw=2.5 if c == "overall" else 1.2)
        ax.set(title=split, xlabel="self-correction strength eta (0 = DPT)", ylabel="judge accuracy (%)",
               ylim=(0, 100))
        ax.legend(fontsize=7)
        rows += [[f"{e:g}", split, *(f"{100 * v[c]:.1f}" for c in cols)] for e, v in pts]
    fig.tight_layout()
    path = out / "plots" / "sc_curve.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return ("judge accuracy (%) by self-correction strength", ["eta", "split", *cols], rows), path


def training_curves(out: Path) -> Path | None:
    """Loss and validation curves of both stages (matplotlib, Agg)."""
    from dptune.evaluation.report_plots import pyplot

    runs = {s: out / s / "metrics.jsonl" for s in ("probe", "tune")}
    runs = {s: [json.loads(x) for x in p.read_text().splitlines()] for s, p in runs.items() if p.is_file()}
    if not runs:
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    offset = 0
    for stage, rows in runs.items():
        train = [r for r in rows if r["kind"] == "train"]
        val = [r for r in rows if r["kind"] == "val"]
        axes[0].plot([offset + r["step"] for r in train], [r["total"] for r in train], label=f"{stage} loss")
        for key in ("itm_hn", "rec_p1", "gen_overall"):
            pts = [(offset + r["step"], r[key]) for r in val if key in r]
            if pts:
                axes[1].plot(*zip(*pts, strict=True), marker="o", label=f"{stage} {key}")
        offset += max((r["step"] for r in train), default=0)
    axes[0].set(xlabel="step (stage 2 after stage 1)", ylabel="training loss", yscale="log")
    axes[1].set(xlabel="step", ylabel="validation", ylim=(0, 1))
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "plots" / "training_curves.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _section(title: str, what: str, table: Table | None, bullets: list[str], md_extra: str = "",
             html_extra: str = "") -> tuple[str, str]:
    """One intro section as (markdown, html): heading, explanation, table, bullet points, extras."""
    md = [f"## {title}", "", what, ""]
    h = f"<h2>{html.escape(title)}</h2><p>{html.escape(what)}</p>"
    if table:
        md += [*_md_lines(table), ""]
        h += html_table(table)
    if bullets:
        md += [*(f"- {b}" for b in bullets), ""]
        # ** is Markdown emphasis: dropped in HTML rather than shown as asterisks
        h += "<ul>" + "".join(f"<li>{html.escape(b).replace('**', '')}</li>" for b in bullets) + "</ul>"
    return "\n".join(md + ([md_extra, ""] if md_extra else [])), h + html_extra


def _intro(results: dict, out: Path) -> list[tuple[str, str]]:
    from dptune.evaluation.report_grid import png_data_uri

    header, rows, means = judge_table(results)
    demo = results.get("demo", {})
    timing = ", ".join(f"{k} {v:.0f} s" for k, v in demo.get("timings_s", {}).items())
    wall = f"Wall time: {demo.get('total_s', 0):.0f} s ({timing})."
    intro = [_section("what each method changes here", "Exact-judge accuracy (%) of generated images per "
                      "category; same prompts and seeds for every method. ID = compositions seen in training, "
                      "OOD = held-out compositions.", ("", header, rows), summary_lines(results, means), md_extra=wall,
                      html_extra=f"<p>{html.escape(wall)}</p>")]
    table, findings = text_check_table(results)
    if table:
        intro.append(_section(
            "can the text encoder see the edit?", "How far apart the text encoder puts a caption and its "
            "minimally edited hard negative, per kind of edit (64 pairs each; cosine of the pooled embedding "
            "CLIP(y) the matching score uses, and the relative difference of the token states the U-Net reads).",
            table, findings))
    breakdown = relation_table(results)
    if breakdown:
        intro.append(_section(
            "relation failures", "Why relation images fail (counts of images, from the objects the judge "
            "detected): an object is missing, or both are there and the stated relation, its opposite, or "
            "neither holds.", breakdown, []))
    points = sc_curve_points(results, means)
    if points:
        table, plot = sc_curve_section(points, out)
        intro.append(_section(
            "self-correction strength", "Judge accuracy (%) of the tuned model against the self-correction "
            "strength (paper Fig. 4b).", table, [], md_extra="![self-correction strength](plots/sc_curve.png)",
            html_extra=f"<img class='plot' src='{png_data_uri(plot)}'>"))
    for note in results.get("demo", {}).get("method_notes") or []:  # tables the methods' demo hooks added
        intro.append(_section(note["title"], note.get("what", ""), ("", note["header"], note["rows"]), []))
    curves = training_curves(out)
    if curves:
        intro.append(("## training\n\n![training curves](plots/training_curves.png)\n",
                      f"<h2>training</h2><img class='plot' src='{png_data_uri(curves)}'>"))
    return intro


def write_demo_report(results: dict, out: Path) -> dict:
    """Write the demo's report.md / report.html into ``out``. Image paths are relative to the evaluation's
    folder, ``results['image_root']`` under ``out`` (default ``eval``, where the demo runs its evaluation)."""
    from dptune.evaluation.report import check_images, image_root, write_report

    out = Path(out)
    images = image_root(results, out, default=EVAL_DIR)
    check_images(results, out, images)  # a missing PNG fails before any plot is drawn
    return write_report(results, out, title="dptune demo: every method on ShapesWorld", intro=_intro(results, out),
                        image_dir=images)
