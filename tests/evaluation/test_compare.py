"""`dptune compare`: one table of every method -- Wilson intervals, costs read from the weight files, methods
whose weights are missing listed as skipped with the command that trains them."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from dptune.cli.main import main
from dptune.evaluation.compare import comparison_rows, format_table, wilson
from dptune.methods import Method, register_method, unregister_method
from dptune.methods.cost import method_cost
from dptune.utils.config import field


def test_wilson_interval_matches_the_closed_form():
    lo, hi = wilson(5, 10)
    assert (lo, hi) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson(0, 8)[0] == 0 and wilson(8, 8)[1] == pytest.approx(1.0)


def _records(cat_scores: dict[str, list[int]]) -> list[dict]:
    return [{"category": c, "metrics": {"judge": {"score": s}}} for c, scores in cat_scores.items() for s in scores]


def test_rows_count_verdicts_per_category_and_carry_costs():
    results = {"methods": [
        {"name": "a", "cost": {"train_seconds": 12.5, "trainable_params": 100},
         "generative": {"s": {"images": _records({"count": [1, 0, 1, 1], "colour": [1, 1]}),
                              "seconds_per_image": 0.25}}},
        {"name": "b", "generative": {"s": {"images": _records({"count": [0, 0, 0, 0], "colour": [1, 0]})}}},
    ]}
    rows = comparison_rows(results)
    a, b = rows
    assert a["categories"]["count"] == {"accuracy": 0.75, "correct": 3, "n": 4,
                                        **dict(zip(("ci_low", "ci_high"), wilson(3, 4), strict=True))}
    assert a["categories"]["overall"]["correct"] == 5 and a["categories"]["overall"]["n"] == 6
    assert (a["train_seconds"], a["trainable_params"], a["seconds_per_image"]) == (12.5, 100, 0.25)
    assert b["train_seconds"] is None and b["categories"]["count"]["accuracy"] == 0
    text = format_table(rows)
    assert text.splitlines()[0] == "| method | set | colour | count | overall | s/image | train s | trained params |"
    assert "| a | s | 100.0 [" in text and "| 12 | 100 |" in text


@dataclass
class TokenConfig:
    tokens: str | None = field(None, help="token file")


def test_cost_is_read_from_the_weight_files(tmp_path):
    run = tmp_path / "run" / "final"
    (run / "tok").mkdir(parents=True)
    save_file({"a": torch.zeros(3, 4), "b": torch.zeros(5)}, str(run / "tok" / "t.safetensors"))
    method = Method("x", "x", TokenConfig, lambda c, ctx: None, weights=("tokens",))
    assert method_cost(method, TokenConfig(str(run / "tok"))) == {"trainable_params": 17, "train_seconds": None}
    (run / "state.json").write_text(json.dumps({"step": 3, "train_seconds": 42.0}))
    assert method_cost(method, TokenConfig(str(run / "tok"))) == {"trainable_params": 17, "train_seconds": 42.0}
    assert method_cost(method, TokenConfig(None))["trainable_params"] is None


class Painter:
    description = "paints the prompt's scene"

    def __init__(self, cfg, ctx) -> None:
        self.cfg = cfg

    def __call__(self, prompts, seeds):
        from dptune.shapesworld import render_prompt

        return np.stack([render_prompt(p, s) for p, s in zip(prompts, seeds, strict=True)]) / 255.0


@pytest.fixture
def toy_methods():
    register_method(Method("painter", "test-only", TokenConfig, Painter))
    register_method(Method("needs-tokens", "test-only", TokenConfig, Painter, weights=("tokens",),
                           trained_by="dptune train needs-tokens"))
    yield
    unregister_method("painter")
    unregister_method("needs-tokens")


def test_compare_cli_writes_the_table_and_names_what_it_skipped(toy_methods, tmp_path, capsys, monkeypatch):
    # only the toy methods (the built-ins would load the shipped model): restrict the registry for this test
    import dptune.methods.registry as reg
    from dptune.methods import methods as registered

    monkeypatch.setattr(reg, "_REGISTRY", {k: v for k, v in registered().items()
                                           if k in ("painter", "needs-tokens")})
    out = tmp_path / "cmp"
    code = main(["compare", "--prompts", "shapesworld-id", "--prompts-per-category", "1", "--images-per-prompt",
                 "2", "--n-boot", "20", "--out", str(out), "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "skipped needs-tokens: method 'needs-tokens' needs tokens weights (made by `dptune train needs-tokens`)" \
        in printed
    saved = json.loads((out / "comparison.json").read_text())
    (row,) = saved["rows"]
    assert row["method"] == "painter" and row["categories"]["overall"] == {
        "accuracy": 1.0, "correct": 8, "n": 8, "ci_low": pytest.approx(wilson(8, 8)[0]), "ci_high": 1.0}
    assert (out / "comparison.csv").read_text().splitlines()[0].startswith("method,set,colour,count")
    assert "| painter | shapesworld-id | 100.0 [" in (out / "comparison.md").read_text()


def test_compare_with_an_unknown_method_lists_the_known_ones(capsys, tmp_path):
    assert main(["compare", "--methods", "nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("dptune compare: error: unknown method 'nope'; known")
    assert all(name in err for name in ("base", "dpt", "dpt+sc", "dpt+gsc"))
