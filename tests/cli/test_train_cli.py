"""`dptune probe` / `dptune tune` from the command line: config precedence, errors, 2-process runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dptune.cli.main import main

SMALL = ["--model", "tiny-random", "--data-size", "16", "--val-size", "4", "--batch-size", "2",
         "--adapter-d-model", "32", "--adapter-ffn", "64", "--adapter-heads", "4", "--no-progress"]


def test_probe_cli_with_config_file_and_flags(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("steps: 5\nlr: 0.002\nval_t: 100\n")
    out = tmp_path / "run"
    rc = main(["probe", *SMALL, "--config", str(cfg), "--steps", "2", "--out-dir", str(out)])
    assert rc == 0
    saved = json.loads((out / "final" / "config.json").read_text())
    assert saved["steps"] == 2 and saved["lr"] == 0.002 and saved["val_t"] == 100  # flag beats file
    assert saved["stage"] == "probe"
    assert "probe: 2 steps" in capsys.readouterr().out


def test_tune_cli_stage_defaults(tmp_path):
    out = tmp_path / "tune"
    assert main(["tune", *SMALL, "--steps", "1", "--grad-accum", "1", "--out-dir", str(out)]) == 0
    saved = json.loads((out / "final" / "config.json").read_text())
    assert saved["stage"] == "tune" and saved["mse_weight"] == 1.0 and saved["lr_schedule"] == "cosine"
    assert (out / "final" / "lora" / "pytorch_lora_weights.safetensors").is_file()


# bad input (unknown block, missing model, unknown config option): rows in tests/test_cli_errors.py


def test_two_process_cpu_run(tmp_path):
    """`torchrun --nproc_per_node 2` on CPU: accelerate forms a gloo DDP group; a few steps complete."""
    out = tmp_path / "mp"
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun), "--nproc_per_node", "2", "-m", "dptune.cli.main", "probe", *SMALL, "--steps", "2",
           "--out-dir", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    state = json.loads((out / "checkpoints" / "step-0000002" / "state.json").read_text())
    assert state["world_size"] == 2 and state["step"] == 2


@pytest.mark.parametrize("stage", ["probe", "tune"])
def test_help_lists_every_option_with_help(stage, capsys):
    with pytest.raises(SystemExit):
        main([stage, "--help"])
    text = capsys.readouterr().out
    for flag in ("--blocks", "--lora-rank", "--mse-weight", "--max-minutes", "--grad-clip"):
        assert flag in text
