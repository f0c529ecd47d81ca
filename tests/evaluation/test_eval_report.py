"""Evaluation reports: tables, image grids resolved against the evaluation's folder, merged results, and
``evaluate_methods`` end to end with injected generators (fake registered methods, no model)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest

from demo_fixtures import demo_results
from dptune.evaluation.report import (
    MissingImageError,
    grid_prompt_indices,
    load_results,
    merge_results,
    png_data_uri,
    pyplot,
    write_report,
)
from helpers import perfect_generator, relation_blind_generator

EMBEDDED = re.compile(r"<img [^>]*src='data:image/png;base64,[A-Za-z0-9+/=]+'")


def _save(results: dict, path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, sort_keys=True))


def test_report_tables_grid_and_links_from_a_results_json(tmp_path):
    """Catches Markdown tables in the HTML, images left out of the grid, and categories shown in the sorted
    key order of a results.json read back (overall must come after the categories)."""
    _save(demo_results(tmp_path, k=1), tmp_path / "eval" / "results.json")
    results = load_results(tmp_path / "eval" / "results.json")  # keys sorted, as on disk
    paths = write_report(results, tmp_path / "eval")
    md, page = paths["md"].read_text(), paths["html"].read_text()
    assert "![s0](images/base/shapesworld-id/p0000_j0_s0.png)" in md
    assert "| method | binding | colour | count | relation | overall |" in md
    assert "| dpt | +25.0 [+25.0, +25.0] |" in md  # paired: dpt draws the relation base draws reversed
    assert "|---|" not in page and "class='bad'" in page and "class='ok'" in page and "does not hold" in page
    plots = list((tmp_path / "eval" / "plots").glob("*.png"))
    assert len(plots) == 2 and len(EMBEDDED.findall(page)) == 4 * 4 * 2 + 2  # every record of 4 methods


def test_a_missing_image_is_an_error_even_outside_the_grid(tmp_path):
    """Catches reports that silently drop images whose file is not there, or that check only the few
    prompts the grid shows."""
    results = demo_results(tmp_path, k=1)
    with pytest.raises(MissingImageError, match=re.escape(str(tmp_path / "results.json"))):
        write_report(results, tmp_path)  # the records are relative to tmp_path/eval, not tmp_path
    assert write_report(results, tmp_path, image_dir=tmp_path / "eval", grid_prompts=1)["html"].is_file()
    rec = results["methods"][2]["generative"]["shapesworld-ood"]["images"][3]  # not among the grid's prompts
    (tmp_path / "eval" / rec["file"]).unlink()
    with pytest.raises(MissingImageError, match=re.escape(rec["file"])):
        write_report(results, tmp_path / "again", image_dir=tmp_path / "eval", grid_prompts=1)
    assert not (tmp_path / "again").exists()  # nothing written


def test_merge_results_rebases_image_paths(tmp_path):
    """Catches merged reports that resolve images against the wrong folder: one results.json keeps its images
    in a subfolder it names as ``image_root`` (the demo's layout), the other next to itself."""
    a = demo_results(tmp_path / "a", k=1) | {"image_root": "eval"}
    _save(a, tmp_path / "a" / "results.json")
    _save(demo_results(tmp_path / "b", k=1), tmp_path / "b" / "eval" / "results.json")
    merged = merge_results([tmp_path / "a" / "results.json", tmp_path / "b" / "eval" / "results.json"],
                           tmp_path / "ab")
    names = [m["name"] for m in merged["methods"]]
    assert names[:5] == ["base", "dpt", "dpt+sc", "dpt+sc eta 1", "base#2"] and len(names) == 8
    rec_a = merged["methods"][0]["generative"]["shapesworld-id"]["images"][0]
    rec_b = merged["methods"][4]["generative"]["shapesworld-id"]["images"][0]
    assert rec_a["file"].startswith("../a/eval/images/") and rec_b["file"].startswith("../b/eval/images/")
    page = write_report(merged, tmp_path / "ab")["html"].read_text()
    assert "base#2" in page and len(EMBEDDED.findall(page)) == 8 * 4 * 2 + 2
    (tmp_path / "ab" / rec_b["file"]).unlink()
    with pytest.raises(MissingImageError, match=re.escape(str(tmp_path / "b" / "eval" / "results.json"))):
        write_report(merged, tmp_path / "ab")


def test_public_helpers(tmp_path):
    assert grid_prompt_indices([{"prompt_index": i, "category": c} for i, c in enumerate("aaabbbcc")], 4) == [
        0, 3, 6, 1]
    plt = pyplot()
    fig = plt.figure(figsize=(1, 1))
    fig.savefig(tmp_path / "p.png")
    plt.close(fig)
    assert png_data_uri(tmp_path / "p.png").startswith("data:image/png;base64,iVBOR")  # PNG magic


# ---- evaluate_methods end to end ----------------------------------------------------------------------------
@dataclass
class _NoOptions:
    pass


def _fake_run(label: str, generate):
    """A registered-method run whose generator is ``generate`` (no model is loaded)."""
    from dptune.methods import Method, MethodRun

    generate.description = f"fake {label}"
    method = Method(name=f"fake-{label}", summary="test", config=_NoOptions, generator=lambda cfg, ctx: generate)
    return MethodRun(label, method, _NoOptions())


def _run(tmp_path, name="run"):
    from dptune.evaluation.suite import EvalConfig, evaluate_methods

    cfg = EvalConfig(prompts=["shapesworld-id"], prompts_per_category=3, images_per_prompt=2, n_boot=300,
                     grid_prompts=4, out=str(tmp_path / name))
    runs = [_fake_run("base", relation_blind_generator()), _fake_run("dpt", perfect_generator())]
    return evaluate_methods(runs, cfg, progress=False)


def test_evaluate_methods_writes_results_and_a_side_by_side_report(tmp_path):
    results = _run(tmp_path)
    out = tmp_path / "run"
    saved = load_results(out / "results.json")
    assert [m["name"] for m in saved["methods"]] == ["base", "dpt"]
    base, dpt = (m["generative"]["shapesworld-id"] for m in saved["methods"])
    assert base["summary"]["judge"]["overall"]["mean"] == pytest.approx(0.75)
    assert dpt["summary"]["judge"]["overall"]["mean"] == pytest.approx(1.0)
    assert base["settings"]["generator"] == "fake base" and base["settings"]["steps"] == 25
    assert [r["seed"] for r in base["images"]] == [r["seed"] for r in dpt["images"]]  # aligned by seed
    assert saved["config"]["images_per_prompt"] == 2 and results["methods"][0]["discriminative"] is None

    md = (out / "report.md").read_text()
    assert "| base |" in md and "| dpt |" in md and "![s0](images/base/shapesworld-id/p0000_j0_s0.png)" in md
    # paired difference dpt - base: +25 points (relation prompts only), zero variance within strata
    assert "| dpt | +25.0 [+25.0, +25.0]" in md
    page = (out / "report.html").read_text()
    assert len(EMBEDDED.findall(page)) == 4 * 2 * 2 + 1  # grid: 4 prompts x 2 images x 2 methods; 1 plot
    assert "class='bad'" in page and "class='ok'" in page and "does not hold" in page
    assert (out / "plots" / "shapesworld-id.png").stat().st_size > 1000


def test_fid_and_is_through_the_suite_with_custom_modules(tmp_path):
    import numpy as np
    import torch
    from PIL import Image

    from dptune.evaluation.suite import EvalConfig, evaluate_methods

    real = tmp_path / "real"
    real.mkdir()
    for i in range(4):
        Image.fromarray(np.full((32, 32, 3), 60 * i, dtype=np.uint8)).save(real / f"{i}.png")

    class MeanColour(torch.nn.Module):  # FID features: mean RGB per image
        num_features = 3

        def forward(self, x):
            return x.double().mean(dim=(2, 3))

    class Bright(torch.nn.Module):  # IS classifier: 2 classes by brightness
        def forward(self, x):
            m = x.float().mean(dim=(1, 2, 3)) / 255.0
            return torch.stack([m, 1 - m], 1)

    cfg = EvalConfig(prompts=["shapesworld-id"], prompts_per_category=1, images_per_prompt=2, n_boot=100,
                     fid_real=str(real), inception_score=True, is_splits=2, out=str(tmp_path / "q"))
    res = evaluate_methods([_fake_run("base", perfect_generator())], cfg, fid_feature=MeanColour(),
                           is_classifier=Bright(), progress=False)
    q = res["methods"][0]["generative"]["shapesworld-id"]["quality"]
    assert q["n_generated"] == 8 and q["n_real"] == 4 and q["fid"] > 0 and q["is_mean"] >= 1.0
    assert "| base | " in (tmp_path / "q" / "report.md").read_text().split("image quality")[1]


def test_eval_config_checks():
    from dptune.evaluation.suite import EvalConfig

    with pytest.raises(ValueError, match="t must be"):
        EvalConfig(t=1000)


def test_dptune_eval_cli_on_tiny_random(tmp_path, capsys):
    from dptune.cli.main import main

    out = tmp_path / "eval"
    code = main(
        [
            "eval",
            "--model",
            "tiny-random",
            "--adapter",
            "random",
            "--methods",
            "base,dpt+sc",
            "--prompts",
            "shapesworld-ood",
            "--prompts-per-category",
            "1",
            "--images-per-prompt",
            "2",
            "--discriminative",
            "--disc-sets",
            "shapesworld-id",
            "--disc-items",
            "4",
            "--n-boot",
            "100",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "dpt+sc" in printed and "ITM" in printed and "report.html" in printed
    data = json.loads((out / "results.json").read_text())
    base, sc = data["methods"]
    assert base["discriminative"] is None
    itm = sc["discriminative"]["shapesworld-id"]["itm"]
    assert (
        itm["n_i2t"] == 4 and itm["chance_i2t"] == 25.0 and sc["discriminative"]["shapesworld-id"]["t"] == 250
    )
    assert sc["spec"]["config"]["eta"] == 0.5 and sc["generative"]["shapesworld-ood"]["settings"]["steps"] == 25
    assert len(sc["generative"]["shapesworld-ood"]["images"]) == 8
    assert (out / "report.html").is_file() and (out / "plots" / "discriminative.png").is_file()
    # re-render from results only: the images stay where the evaluation wrote them
    assert main(["eval", "--report-from", str(out / "results.json"), "--out", str(tmp_path / "again")]) == 0
    page = (tmp_path / "again" / "report.html").read_text()
    assert "dpt+sc(adapter=random" in page and len(EMBEDDED.findall(page)) == 2 * 4 * 2 + 2


def test_cli_errors_are_one_line(tmp_path, capsys):
    from dptune.cli.main import main

    code = main(["eval", "--model", "tiny-random", "--methods", "dpt+sc", "--out", str(tmp_path)])
    assert code == 2 and "needs adapter weights" in capsys.readouterr().err
    code = main(
        ["eval", "--model", "tiny-random", "--prompts", "geneval:/nonexistent.jsonl", "--out", str(tmp_path)]
    )
    assert code == 2 and "docs/evaluation.md" in capsys.readouterr().err
