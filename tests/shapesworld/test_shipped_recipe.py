"""The recipe `make shapesworld-model` runs is the one the shipped model's own logs record."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from dptune.backbone import shipped_models
from dptune.utils.config import merge_config

REPO = Path(__file__).resolve().parents[2]


def _make_commands(target: str) -> dict[str, list[str]]:
    """{subcommand: argv after it} of the ``dptune shapesworld ...`` lines of a Makefile target."""
    text = (REPO / "Makefile").read_text().replace("\\\n", " ")
    lines = text.split(f"\n{target}:", 1)[1].split("\n")[1:]
    variables = dict(line.split(" ?= ") for line in text.split("\n") if " ?= " in line)
    commands = {}
    for line in lines:
        if not line.startswith("\t"):
            break
        for name, value in variables.items():
            line = line.replace(f"$({name})", value.strip())
        argv = shlex.split(line)
        assert argv[0].endswith("dptune") and argv[1] == "shapesworld", line
        commands[argv[2]] = argv[3:]
    return commands


def test_make_shapesworld_model_runs_the_shipped_recipe():
    from dptune.shapesworld import pretrain_text, train_base

    commands = _make_commands("shapesworld-model")
    assert list(commands) == ["pretrain-text", "train-base"]
    shipped = Path(shipped_models()["shapesworld"])

    args = pretrain_text.build_arg_parser().parse_args(commands["pretrain-text"])
    ours = merge_config(pretrain_text.PretrainTextConfig, args, file=args.config)
    logged = json.loads((shipped / "text_pretrain_log.json").read_text())["config"]
    for key in ("steps", "tag_weight", "num_images", "batch_size", "lr", "all_compositions", "seed"):
        assert getattr(ours, key) == logged[key], key
    assert ours.object_weight == logged.get("object_weight", 0.0)  # the shipped encoder predates the option

    args = train_base.build_arg_parser().parse_args(commands["train-base"])
    ours = train_base.config_from_args(args)
    log = json.loads((shipped / "training_log.json").read_text())
    for key in ("paraphrases", "freeze_text_encoder", "vae_steps", "max_unet_steps", "num_images", "batch_size",
                "unet_lr", "seed", "min_snr_gamma", "empty_caption_prob"):
        assert getattr(ours, key) == log["config"][key], key
    assert log["unet_steps"] == ours.max_unet_steps  # the shipped run trained to the end of the recipe
    assert ours.init_text_encoder == commands["pretrain-text"][commands["pretrain-text"].index("--out") + 1]
