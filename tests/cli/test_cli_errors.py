"""Bad input to any ``dptune`` command: exit code 2 and exactly ONE line on stderr, ``dptune <command>: error: ...``.

Every row goes through ``dptune.cli.main.main`` (what the ``dptune`` script runs), so a second line printed
anywhere (a progress bar before the check, a warning, a traceback, a multi-line message) fails the row.
Deliberate break seen failing: ``main()`` printing a second line after the error line (every row failed).

To add a command: append a row ``(argv, needle)`` to ``ROWS``. ``{tmp}`` in an argument is a fresh empty
folder; ``needle`` (also formatted) must appear in the error line, so the row checks the message too.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dptune.cli.main import main

# Imported before any output is captured: transformers' one-off import-time warnings (see
# test_a_fresh_process_prints_only_the_error_line) would otherwise land in whichever row imports it first.
from diffusers import StableDiffusionPipeline  # noqa: E402, F401  isort: skip


OUT = ["--out-dir", "{tmp}/run"]  # never the default runs/ folder of the working directory
TINY = ["--model", "tiny-random", "--steps", "1", *OUT]
ROWS = [
    # training
    pytest.param(["probe", *OUT, "--config", "{tmp}/missing.yaml"], "config file {tmp}/missing.yaml does not exist",
                 id="probe-missing-config"),
    pytest.param(["probe", *OUT, "--config", "{tmp}/bad.yaml"], "unknown TrainConfig option(s) ['learning_rate']",
                 id="probe-unknown-option-in-config"),
    pytest.param(["probe", *TINY, "--blocks", "up9"], "unknown U-Net block(s) ['up9']", id="probe-unknown-block"),
    pytest.param(["probe", *OUT, "--steps", "0"], "steps, batch_size, grad_accum must be > 0", id="probe-zero-steps"),
    pytest.param(["tune", *OUT, "--model", "{tmp}/missing"], "model folder {tmp}/missing does not exist",
                 id="tune-missing-model"),
    pytest.param(["tune", *TINY, "--adapter-init", "{tmp}/none"], "{tmp}/none/adapter_config.json does not exist",
                 id="tune-missing-adapter"),
    # inspection
    pytest.param(["info", "--model", "{tmp}/missing"], "model folder {tmp}/missing does not exist",
                 id="info-missing-model"),
    pytest.param(["info", "--model", "tiny-random", "--device", "nonsense"], "nonsense", id="info-bad-device"),
    pytest.param(["adapter-info", "--sd-config", "{tmp}/missing"], "--sd-config must be a diffusers model",
                 id="adapter-info-missing-config"),
    pytest.param(["adapter-info", "--sd-config", "{sd_configs}/sd-v1-5", "--block", "up9"], "unknown block 'up9'",
                 id="adapter-info-unknown-block"),
    # demo
    pytest.param(["demo", "--out-dir", "{tmp}/demo", "--probe-steps", "0"], "probe_steps and tune_steps must be >= 1",
                 id="demo-zero-steps"),
    # shapesworld
    pytest.param(["shapesworld", "text-check", "--n", "0"], "--n must be >= 1", id="shapesworld-text-check-n0"),
    pytest.param(["shapesworld", "render", "--n", "0", "--out", "{tmp}/r"], "size must be a positive int",
                 id="shapesworld-render-n0"),
    pytest.param(["shapesworld", "score", "--lora", "{tmp}/none", "--out", "{tmp}/s"],
                 "lora folder {tmp}/none does not exist", id="shapesworld-score-missing-lora"),
    pytest.param(["shapesworld", "text-check", "--lora", "{tmp}/none"], "LoRA directory {tmp}/none does not exist",
                 id="shapesworld-text-check-missing-lora"),
    pytest.param(["shapesworld", "train-base", "--out", "{tmp}/tb", "--config", "{tmp}/missing.yaml"],
                 "config file {tmp}/missing.yaml does not exist", id="shapesworld-train-base-missing-config"),
    pytest.param(["shapesworld", "pretrain-text", "--out", "{tmp}/pt", "--config", "{tmp}/missing.yaml"],
                 "config file {tmp}/missing.yaml does not exist", id="shapesworld-pretrain-text-missing-config"),
    # data
    pytest.param(["data", "build-hn-coco", "--captions", "{tmp}/missing.json", "--negatives", "{tmp}/x.json",
                  "--out", "{tmp}/o.json"], "COCO captions file {tmp}/missing.json does not exist",
                 id="data-build-hn-coco-missing-captions"),
    pytest.param(["data", "convert-refer", "--refer-dir", "{tmp}/none", "--out", "{tmp}/o.json"],
                 "refer folder {tmp}/none does not exist", id="data-convert-refer-missing-folder"),
    pytest.param(["data", "cache-latents", "--vae", "{tmp}", "--out", "{tmp}/lat"], "nothing to cache",
                 id="data-cache-latents-nothing"),
    # generate / eval / compare / methods / train / app
    pytest.param(["generate", "--model", "tiny-random", "--method", "dpt+gsc", "--prompt", "a red circle", "--out",
                  "{tmp}/g"], "needs adapter weights (made by `dptune probe && dptune tune`)",
                 id="generate-gsc-no-adapter"),
    pytest.param(["generate", "--method", "magic", "--prompt", "a red circle", "--out", "{tmp}/g"],
                 "unknown method 'magic'; known methods:", id="generate-unknown-method"),
    pytest.param(["generate", "--prompt", " ", "--out", "{tmp}/g"], "empty --prompt", id="generate-empty-prompt"),
    pytest.param(["eval", "--methods", "dpt+sc:eta=-1", "--adapter", "random", "--out", "{tmp}/e"],
                 "eta must be >= 0", id="eval-negative-eta"),
    pytest.param(["eval", "--methods", "dpt", "--out", "{tmp}/e"], "needs lora weights", id="eval-missing-lora"),
    pytest.param(["compare", "--methods", "nope", "--out", "{tmp}/c"], "unknown method 'nope'", id="compare-unknown"),
    pytest.param(["methods", "nope"], "unknown method 'nope'", id="methods-unknown"),
    pytest.param(["train", "dpt+sc"], "has nothing to train", id="train-not-trainable"),
    pytest.param(["train", "dpt", "--config", "{tmp}/missing.yaml"], "config file {tmp}/missing.yaml does not exist",
                 id="train-missing-config"),
    pytest.param(["app", "--methods", "dpt", "--demo-dir", "{tmp}"], "needs lora weights", id="app-missing-weights"),
]


def _argv(argv: list[str], tmp) -> list[str]:
    from dptune.backbone.tiny import SD_CONFIG_DIR

    return [a.format(tmp=tmp, sd_configs=SD_CONFIG_DIR) for a in argv]


@pytest.mark.parametrize(("argv", "needle"), ROWS)
def test_bad_input_gives_one_error_line_and_exit_code_2(argv, needle, tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("learning_rate: 1\n")
    code = main(_argv(argv, tmp_path))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2
    assert len(lines) == 1, err
    assert lines[0].startswith(f"dptune {argv[0]}: error: "), lines[0]
    assert needle.format(tmp=tmp_path) in lines[0]


def test_a_fresh_process_prints_only_the_error_line(tmp_path):
    """The in-process rows cannot see import-time output; a real ``dptune`` process can."""
    cmd = [sys.executable, "-m", "dptune.cli.main", "tune", *_argv(OUT, tmp_path), "--model", str(tmp_path / "missing")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"dptune tune: error: model folder {tmp_path / 'missing'} does not exist")
