"""``dptune generate`` end to end on a tiny pipeline folder with a random adapter, through the method registry."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from dptune.adapter import save_adapter
from dptune.cli.main import main
from helpers import make_tiny_adapter


@pytest.fixture
def adapter_dir(tmp_path):
    return save_adapter(make_tiny_adapter(), tmp_path / "adapter")


def run(*argv):
    return main(["generate", "--no-progress", "--steps", "2", *map(str, argv)])


def read_meta(out):
    return [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]


def test_generate_with_adapter_writes_images_metadata_and_grid(tiny_pipeline_dir, adapter_dir, tmp_path):
    out = tmp_path / "out"
    rc = run(
        "--model",
        tiny_pipeline_dir,
        "--method",
        "dpt+sc:window=0:1",
        "--adapter",
        adapter_dir,
        "--guidance",
        7.5,
        "--prompt",
        "a red circle",
        "--prompt",
        "two blue squares",
        "--seeds",
        0,
        7,
        "--batch-size",
        3,
        "--scheduler",
        "dpmpp",
        "--out",
        out,
    )
    assert rc == 0
    meta = read_meta(out)
    assert [(m["prompt"], m["seed"]) for m in meta] == [
        ("a red circle", 0),
        ("a red circle", 7),
        ("two blue squares", 0),
        ("two blue squares", 7),
    ]
    for m in meta:
        assert Image.open(out / m["file"]).size == (16, 16)
        assert m["scheduler"] == "dpmpp" and m["steps"] == 2 and m["guidance"] == 7.5
        cfg = m["method"]["config"]
        assert m["method"]["method"] == "dpt+sc" and cfg["eta"] == 0.5 and cfg["window"] == [0.0, 1.0]
        assert cfg["adapter"] == str(adapter_dir)
        assert [step for step, _ in m["guidance_score_trace"]] == [0, 1]
    assert sorted(p.name for p in out.glob("*.png")) == sorted([m["file"] for m in meta] + ["grid.png"])
    # columns = seeds, rows = prompts; the 16 px images enlarged 8x (nearest neighbour) to 128 px tiles
    grid = np.asarray(Image.open(out / "grid.png"))
    assert grid.shape == (2 * 128, 2 * 128, 3)
    first = np.asarray(Image.open(out / meta[0]["file"]))  # (16, 16, 3)
    assert np.array_equal(grid[:128, :128], np.repeat(np.repeat(first, 8, axis=0), 8, axis=1))


def test_generate_plain_from_prompt_file(tiny_pipeline_dir, tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "a red circle"}\n\n{"text": "a green triangle"}\n')
    out = tmp_path / "out"
    assert (
        run("--model", tiny_pipeline_dir, "--prompts", prompts, "--seed", 4, "--num-images", 3, "--out", out)
        == 0
    )
    meta = read_meta(out)
    assert [m["seed"] for m in meta] == [4, 5, 6, 4, 5, 6]
    assert meta[3]["prompt"] == "a green triangle"
    assert all(m["method"]["method"] == "base" and m["guidance_score_trace"] == [] for m in meta)
    assert meta[0]["steps"] == 2 and meta[0]["guidance"] == 7.5  # a diffusers folder: the paper's guidance
    text = tmp_path / "p.txt"
    text.write_text("a red circle\n  \na blue square\n")
    assert run("--model", tiny_pipeline_dir, "--prompts", text, "--out", tmp_path / "o2") == 0
    assert [m["prompt"] for m in read_meta(tmp_path / "o2")] == ["a red circle", "a blue square"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "no prompts"),
        (["--prompt", " "], "empty --prompt"),
        (
            ["--prompt", "a red circle", "--method", "dpt+sc", "--adapter", "{tmp}/missing"],
            "adapter folder .*missing does not exist",
        ),
        (["--prompt", "a red circle", "--method", "dpt+sc"], "needs adapter weights"),
        (["--prompt", "a red circle", "--method", "dpt+gsc"], r"needs adapter weights \(made by `dptune probe"),
        (["--prompt", "a red circle", "--method", "dpt+sc:eta=0.5,window=0.8:0.2", "--adapter", "{tmp}"],
         "0 <= start < end <= 1"),
        (["--prompt", "a red circle", "--method", "magic"], "unknown method 'magic'; known methods: "),
        (["--prompts", "{tmp}/none.txt"], "prompt file .* does not exist"),
        (["--prompt", "a", "--seeds", "1", "--num-images", "2"], "either --seeds"),
    ],
)
def test_generate_errors_are_one_line(tiny_pipeline_dir, tmp_path, capsys, argv, message):
    import re

    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    rc = run("--model", tiny_pipeline_dir, "--out", tmp_path / "out", *argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("dptune generate: error:") and len(err.splitlines()) == 1
    assert re.search(message, err), err


def test_generate_warns_about_truncated_prompts(tiny_pipeline_dir, tmp_path, capsys):
    long = " ".join(["red circle"] * 12)  # the tiny tokenizer holds 16 tokens
    assert (
        run("--model", tiny_pipeline_dir, "--prompt", long, "--prompt", "a red circle", "--out", tmp_path)
        == 0
    )
    err = capsys.readouterr().err
    assert "warning: 1 prompt(s) exceed the tokenizer limit of 16 tokens and are truncated" in err


def test_generate_with_grounded_self_correction(tiny_pipeline_dir, adapter_dir, tmp_path):
    out = tmp_path / "out"
    prompt = "a red circle to the left of a blue square"
    assert run("--model", tiny_pipeline_dir, "--adapter", adapter_dir, "--prompt", prompt, "--seeds", 0,
               "--method", "dpt+gsc:window=0:1", "--out", out) == 0
    (meta,) = read_meta(out)
    cfg = meta["method"]["config"]
    assert meta["method"]["method"] == "dpt+gsc" and cfg["ground_t"] == 100 and cfg["normalize_grad"] is True
    assert (out / meta["file"]).is_file()
