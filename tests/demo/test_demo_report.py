"""The demo's report on a hand-built results dict whose images live, as in a real demo run, in the
evaluation's folder ``<out>/eval`` (no model: images are ShapesWorld renders scored by the exact judge)."""

from __future__ import annotations

import os
import re

import pytest

from demo_fixtures import demo_results
from dptune.demo.names import BASE, DPT, DPT_SC, GROUNDED_SC
from dptune.demo.report import rejudge_images, report_image_count, write_demo_report

EMBEDDED = re.compile(r"<img [^>]*src='data:image/png;base64,[A-Za-z0-9+/=]+'")


def _n_records(results: dict) -> int:
    return sum(len(r["images"]) for m in results["methods"] for r in m["generative"].values())


def test_report_embeds_every_image_it_lists(tmp_path):
    """Catches the fresh-clone bug: image paths are relative to ``out/eval`` but the report looked under
    ``out`` and silently skipped every image, leaving the grid empty (only the plots were embedded)."""
    results = demo_results(tmp_path)
    paths = write_demo_report(results, tmp_path)
    page = paths["html"].read_text()
    plots = sorted(p.name for p in (tmp_path / "plots").glob("*.png"))
    assert plots == ["sc_curve.png", "shapesworld-id.png", "shapesworld-ood.png"]
    # 4 prompts per set <= 8 grid prompts: the grid shows every record
    assert len(EMBEDDED.findall(page)) == _n_records(results) + len(plots) == 4 * 2 * 2 * 4 + 3
    assert report_image_count(paths["html"]) == _n_records(results) + len(plots)
    assert page.count("<img") == report_image_count(paths["html"])  # nothing linked, all embedded


def test_markdown_links_point_at_the_images(tmp_path):
    """Catches report.md linking images relative to the evaluation's folder instead of report.md's own."""
    results = demo_results(tmp_path, k=1)
    md = write_demo_report(results, tmp_path)["md"].read_text()
    links = re.findall(r"!\[s\d+\]\(([^)]+)\)", md)
    assert len(links) == _n_records(results)
    assert all((tmp_path / link).is_file() and link.startswith("eval/images/") for link in links)


def test_every_table_is_an_html_table(tmp_path):
    """Catches tables pasted into report.html as Markdown text (the text-encoder check and the relation
    failures were shown as '| a | b |' lines in a <pre>)."""
    page = write_demo_report(demo_results(tmp_path, k=1), tmp_path)["html"].read_text()
    assert "|---|" not in page and "<pre>" not in page
    for title in ("can the text encoder see the edit?", "relation failures", "self-correction strength"):
        section = page.split(f"<h2>{title}</h2>")[1].split("<h2>")[0]
        assert "<table>" in section and "<td>" in section, title
    relation = page.split("<h2>relation failures</h2>")[1].split("</table>")[0]
    assert relation.count("<tr>") == 1 + 4 * 2  # header + 4 methods x (ID, OOD)
    curve = page.split("<h2>self-correction strength</h2>")[1].split("</table>")[0]
    assert re.findall(r"<tr><td>([^<]*)</td>", curve) == ["0", "0.5", "1"] * 2  # eta per split, dpt = 0


def test_a_missing_image_is_an_error_naming_it(tmp_path):
    """Catches a report that silently leaves out an image whose file is missing: it must stop and name the
    file and the results.json that listed it."""
    results = demo_results(tmp_path, k=1)
    rec = results["methods"][1]["generative"]["shapesworld-ood"]["images"][2]
    (tmp_path / "eval" / rec["file"]).unlink()
    with pytest.raises(FileNotFoundError) as err:
        write_demo_report(results, tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "eval" / rec["file"]) in msg and str(tmp_path / "results.json") in msg
    assert "\n" not in msg and f"method {DPT!r}" in msg
    assert not (tmp_path / "report.html").exists() and not (tmp_path / "plots").exists()  # nothing written


def test_image_root_in_the_results_is_honoured(tmp_path):
    """Catches a report that hard-codes the demo's ``eval`` folder instead of reading ``image_root``."""
    results = demo_results(tmp_path, k=1)
    os.rename(tmp_path / "eval", tmp_path / "evaluation")
    with pytest.raises(FileNotFoundError, match="eval"):
        write_demo_report(results, tmp_path)
    results["image_root"] = "evaluation"
    paths = write_demo_report(results, tmp_path)
    assert report_image_count(paths["html"]) == _n_records(results) + 3
    assert rejudge_images(results, tmp_path) == []


def test_report_image_count_refuses_linked_images(tmp_path):
    """Catches a count that would pass a report whose images are links (not one self-contained file)."""
    page = tmp_path / "r.html"
    page.write_text("<p><img src='data:image/png;base64,AAAA'><img class='plot' src=\"data:image/png;base64,B\">")
    assert report_image_count(page) == 2
    page.write_text("<img src='data:image/png;base64,AAAA'><img src='eval/images/x.png'>")
    with pytest.raises(ValueError, match="not embedded"):
        report_image_count(page)


def test_rejudge_images_finds_a_changed_verdict(tmp_path):
    """Catches a re-judge that does not compare with the saved verdicts (or reads the wrong PNGs)."""
    results = demo_results(tmp_path, k=1)
    assert rejudge_images(results, tmp_path) == []
    rec = results["methods"][0]["generative"]["shapesworld-id"]["images"][3]  # base's relation image: wrong
    assert rec["category"] == "relation" and not rec["metrics"]["judge"]["correct"]
    rec["metrics"]["judge"]["correct"] = True
    (line,) = rejudge_images(results, tmp_path)
    assert rec["file"] in line and "correct saved True, re-judged False" in line


def test_demo_method_names_are_registered_methods():
    """Catches the demo naming a method the registry does not know (the grounded row was 'dpt+grounded-sc'
    when the registry called it 'dpt+gsc')."""
    from dptune.methods import methods

    assert {BASE, DPT, DPT_SC, GROUNDED_SC} <= set(methods())


def test_tables_from_method_demo_hooks_appear_in_the_report(tmp_path):
    """A method's demo hook adds a table (e.g. DCT's target-class accuracy); it renders in both reports."""
    results = demo_results(tmp_path, k=1)
    results["demo"]["method_notes"] = [{"title": "DCT: a count-3 class token", "what": "judge on count-3 prompts",
                                        "header": ["method", "accuracy"], "rows": [["base", "58.3"], ["dct", "58.3"]]}]
    paths = write_demo_report(results, tmp_path)
    html = paths["html"].read_text()
    assert "<h2>DCT: a count-3 class token</h2>" in html and "<td>dct</td>" in html and "|---|" not in html
    assert "| dct | 58.3 |" in paths["md"].read_text()
