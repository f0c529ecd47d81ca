"""evaluate_methods + reports with injected generators, method specs, and `dptune eval` on the tiny model."""

from __future__ import annotations

import json

import pytest

from dptune.evaluation.methods import MethodSpec, default_method_names, parse_method, standard_methods
from dptune.evaluation.report import grid_prompt_indices, load_results, merge_results, write_report
from dptune.evaluation.suite import EvalConfig, evaluate_methods
from test_eval_generative import perfect_generator, relation_blind_generator


def _run(tmp_path, name="run"):
    gens = {"base": relation_blind_generator(), "dpt": perfect_generator()}
    cfg = EvalConfig(
        prompts=["shapesworld-id"],
        prompts_per_category=3,
        images_per_prompt=2,
        n_boot=300,
        grid_prompts=4,
        out=str(tmp_path / name),
    )
    methods = [MethodSpec("base", model="shapesworld"), MethodSpec("dpt", model="shapesworld", lora="x")]
    return evaluate_methods(
        methods,
        cfg,
        load=lambda spec: (None, None),
        generator=lambda spec, bb, probe: (gens[spec.name], f"fake {spec.name}"),
        progress=False,
    )


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
    assert page.count("data:image/png;base64,") >= 4 * 2 * 2 + 1  # grid images of both methods + the plot
    assert "class='bad'" in page and "class='ok'" in page and "does not hold" in page
    assert (out / "plots" / "shapesworld-id.png").stat().st_size > 1000


def test_merge_results_rebases_image_paths(tmp_path):
    _run(tmp_path, "a")
    _run(tmp_path, "b")
    merged = merge_results(
        [tmp_path / "a" / "results.json", tmp_path / "b" / "results.json"], tmp_path / "ab"
    )
    assert [m["name"] for m in merged["methods"]] == ["base", "dpt", "base#2", "dpt#2"]
    rec = merged["methods"][2]["generative"]["shapesworld-id"]["images"][0]
    paths = write_report(merged, tmp_path / "ab")
    assert rec["file"].startswith("../b/images/") and ((tmp_path / "ab") / rec["file"]).is_file()
    page = paths["html"].read_text()
    assert "base#2" in page and page.count("data:image/png;base64,") >= 4 * 4 * 2


def test_fid_and_is_through_the_suite_with_custom_modules(tmp_path):
    import numpy as np
    import torch
    from PIL import Image

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

    cfg = EvalConfig(
        prompts=["shapesworld-id"],
        prompts_per_category=1,
        images_per_prompt=2,
        n_boot=100,
        fid_real=str(real),
        inception_score=True,
        is_splits=2,
        out=str(tmp_path / "q"),
    )
    res = evaluate_methods(
        [MethodSpec("base")],
        cfg,
        load=lambda s: (None, None),
        generator=lambda s, b, p: (perfect_generator(), "fake"),
        fid_feature=MeanColour(),
        is_classifier=Bright(),
        progress=False,
    )
    q = res["methods"][0]["generative"]["shapesworld-id"]["quality"]
    assert q["n_generated"] == 8 and q["n_real"] == 4 and q["fid"] > 0 and q["is_mean"] >= 1.0
    assert "| base | " in (tmp_path / "q" / "report.md").read_text().split("image quality")[1]


def test_grid_prompts_cover_every_category():
    recs = [{"prompt_index": i, "category": c} for i, c in enumerate("aaabbbcc")]
    assert grid_prompt_indices(recs, 4) == [0, 3, 6, 1]


def test_method_specs():
    assert default_method_names(None, None) == ["base"]
    assert default_method_names("ad", "lo") == ["base", "dpt", "dpt+sc"]
    assert default_method_names("ad", None) == ["base", "base+sc"]
    ms = standard_methods(["base", "dpt", "dpt+sc"], "shapesworld", "ad", "lo", eta=0.5)
    assert [(m.adapter, m.lora, m.eta) for m in ms] == [
        (None, None, 0.0),
        ("ad", "lo", 0.0),
        ("ad", "lo", 0.5),
    ]
    assert ms[1].probe_key == ms[2].probe_key  # dpt and dpt+sc share one ITM/REC evaluation
    m = parse_method("mine=model=tiny-random,adapter=random,eta=0.2,blocks=mid+up1,window=0:1,mode=official")
    assert (m.name, m.blocks, m.eta, m.sc) == (
        "mine",
        ["mid", "up1"],
        0.2,
        {"window": (0.0, 1.0), "mode": "official"},
    )
    with pytest.raises(ValueError, match="needs an adapter"):
        MethodSpec("x", eta=0.5)
    with pytest.raises(ValueError, match="unknown method"):
        standard_methods(["sd"], "m", None, None)
    with pytest.raises(ValueError, match="--lora"):
        standard_methods(["dpt"], "m", None, None)
    with pytest.raises(ValueError, match="bad entry"):
        parse_method("x=colour=red")
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
            "base,base+sc",
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
    assert "base+sc" in printed and "ITM" in printed and "report.html" in printed
    data = json.loads((out / "results.json").read_text())
    base, sc = data["methods"]
    assert base["discriminative"] is None
    itm = sc["discriminative"]["shapesworld-id"]["itm"]
    assert (
        itm["n_i2t"] == 4 and itm["chance_i2t"] == 25.0 and sc["discriminative"]["shapesworld-id"]["t"] == 250
    )
    assert sc["generative"]["shapesworld-ood"]["settings"]["eta"] == 0.5
    assert len(sc["generative"]["shapesworld-ood"]["images"]) == 8
    assert (out / "report.html").is_file() and (out / "plots" / "discriminative.png").is_file()
    # re-render from results only
    assert main(["eval", "--report-from", str(out / "results.json"), "--out", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "report.md").is_file()


def test_cli_errors_are_one_line(tmp_path, capsys):
    from dptune.cli.main import main

    code = main(["eval", "--model", "tiny-random", "--methods", "dpt+sc", "--out", str(tmp_path)])
    assert code == 2 and "needs the DPT weights" in capsys.readouterr().err
    code = main(
        ["eval", "--model", "tiny-random", "--prompts", "geneval:/nonexistent.jsonl", "--out", str(tmp_path)]
    )
    assert code == 2 and "docs/evaluation.md" in capsys.readouterr().err
