"""The methods registry: listing, the one option parser, clear errors, and a method added from a test file at
run time going through `dptune eval`'s code path without touching the library."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest

from dptune.cli.main import main
from dptune.methods import Method, get_method, methods, parse_method, register_method, unregister_method
from dptune.utils.config import field


def test_builtin_methods_are_registered_and_listed(capsys):
    assert {"base", "dpt", "dpt+sc", "dpt+gsc"} <= set(methods())
    assert main(["methods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines][:4] == ["base", "dpt", "dpt+sc", "dpt+gsc"]
    assert main(["methods", "dpt+sc"]) == 0
    out = capsys.readouterr().out
    assert "eta (default 0.5)" in out and "window" in out and "needs: adapter" in out


def test_options_are_parsed_by_their_dataclass_types():
    run = parse_method("dpt+sc:eta=0.2,window=0:1,normalize_grad=true,grad_every=2,blocks=mid+up1",
                       weights={"adapter": "A", "lora": None})
    cfg = run.config
    assert (cfg.eta, cfg.window, cfg.normalize_grad, cfg.grad_every, cfg.blocks) == (
        0.2, (0.0, 1.0), True, 2, ["mid", "up1"])
    assert cfg.adapter == "A" and cfg.lora is None and run.label == "dpt+sc:eta=0.2,window=0:1,normalize_grad=true," \
        "grad_every=2,blocks=mid+up1"
    assert parse_method("dpt+sc:adapter=B", weights={"adapter": "A"}).config.adapter == "B"  # option wins


@pytest.mark.parametrize(("spec", "message"), [
    ("sdxl-magic", "unknown method 'sdxl-magic'; known methods: .*base, .*dpt, dpt\\+gsc, dpt\\+sc"),
    ("dpt+sc:colour=red", "unknown option 'colour'"),
    ("dpt+sc:normalize_grad=maybe", "takes true or false"),
    ("dpt+sc:eta=fast", "takes a number"),
    ("dpt+sc:eta", "expected key=value"),
    ("dpt+sc:mode=sideways", "mode must be one of"),
])
def test_bad_method_specs_fail_with_one_clear_message(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_method(spec)


def test_missing_weights_name_the_command_that_trains_them(tmp_path):
    with pytest.raises(ValueError, match=r"needs lora weights \(made by `dptune probe && dptune tune`\)"):
        parse_method("dpt").check_weights()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        parse_method("dpt", {"lora": str(tmp_path / "nope")}).check_weights()


@dataclass
class ToyConfig:
    mode: str = field("truth", help="'truth': draw each prompt's scene exactly; 'blank': draw nothing")

    def __post_init__(self) -> None:
        if self.mode not in ("truth", "blank"):
            raise ValueError(f"mode must be 'truth' or 'blank'; got {self.mode!r}")


class ToyGenerator:
    description = "toy: ShapesWorld renders of the prompt"

    def __init__(self, cfg: ToyConfig, ctx) -> None:
        self.cfg, self.ctx = cfg, ctx

    def __call__(self, prompts, seeds):
        from dptune.shapesworld import render_prompt

        if self.cfg.mode == "blank":
            return np.zeros((len(prompts), 32, 32, 3), dtype=np.float32)
        return np.stack([render_prompt(p, s) for p, s in zip(prompts, seeds, strict=True)]) / 255.0


@pytest.fixture
def toy_method():
    register_method(Method("toy", "a test-only method", ToyConfig, ToyGenerator))
    yield get_method("toy")
    unregister_method("toy")


def test_a_method_registered_at_run_time_runs_through_dptune_eval(toy_method, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(["eval", "--methods", "toy,toy:mode=blank", "--prompts", "shapesworld-id",
                 "--prompts-per-category", "2", "--images-per-prompt", "1", "--n-boot", "50", "--out", str(out),
                 "--no-progress"])
    assert code == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    by_name = {m["name"]: m for m in results["methods"]}
    assert set(by_name) == {"toy", "toy:mode=blank"}
    truth = by_name["toy"]["generative"]["shapesworld-id"]["summary"]["judge"]["overall"]["mean"]
    blank = by_name["toy:mode=blank"]["generative"]["shapesworld-id"]["summary"]["judge"]["overall"]["mean"]
    assert truth == 1.0 and blank == 0.0  # the judge saw exactly the toy's images
    assert by_name["toy"]["spec"] == {"method": "toy", "label": "toy", "config": {"mode": "truth"}}
    assert (out / "report.html").is_file()
    assert "toy" not in methods() or get_method("toy") is toy_method


def test_eval_method_lists_keep_each_methods_options():
    """`dptune eval --methods "base,dpt+sc:eta=0.2,window=0:1,dpt"`: commas split methods, not their options."""
    import argparse

    from dptune.cli.eval_cmd import build_methods, split_specs

    assert split_specs("base,dpt+sc:eta=0.2,window=0:1,dpt") == ["base", "dpt+sc:eta=0.2,window=0:1", "dpt"]
    assert split_specs("dpt+sc:eta=0.2") == ["dpt+sc:eta=0.2"]
    args = argparse.Namespace(methods="dpt+sc:eta=0.2", adapter="A", lora=None, tokens=None, weights=["token=T"])
    (run,) = build_methods(args)
    assert (run.label, run.config.eta, run.config.adapter) == ("dpt+sc:eta=0.2", 0.2, "A")
