"""``dptune adapter-info``: default SD 2.1 mid count, --sd-config reading, errors."""

import argparse
import json

import pytest

from dptune.backbone.taps import block_channels_from_config
from dptune.backbone.tiny import SD_CONFIG_DIR
from dptune.cli import adapter_info_cmd

SD = SD_CONFIG_DIR  # the configs ship inside the package: found wherever dptune is installed


def run(capsys, *argv):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    adapter_info_cmd.register(sub, "adapter-info")
    rc = adapter_info_cmd.run(parser.parse_args(["adapter-info", *argv]))
    return rc, capsys.readouterr().out


def test_default_is_sd21_mid(capsys):
    rc, out = run(capsys, "--json")
    data = json.loads(out)
    assert rc == 0 and (data["in_channels"], data["text_dim"]) == (1280, 1024)
    assert data["parameters"]["total"] == 4_566_790


def test_text_table_lists_parts(capsys):
    rc, out = run(capsys, "--in-channels", "320", "--text-dim", "768")
    assert rc == 0 and "in_channels=320, text_dim=768" in out
    for part in ("input_proj", "embeddings", "encoder", "decoder", "queries", "heads", "total"):
        assert part in out


@pytest.mark.parametrize("name, block, want", [("sd-v1-5", "mid", (1280, 768)), ("sd-2-1-base", "up2", (640, 1024))])
def test_sd_config_dirs(capsys, name, block, want):
    rc, out = run(capsys, "--sd-config", str(SD / name), "--block", block, "--json")
    data = json.loads(out)
    assert (data["in_channels"], data["text_dim"]) == want


def test_block_mapping_and_errors():
    cfg = {"block_out_channels": [320, 640, 1280, 1280]}
    got = [block_channels_from_config(cfg, b) for b in ("down0", "down1", "mid", "up2", "up3")]
    assert got == [320, 640, 1280, 640, 320]
    with pytest.raises(ValueError, match="unknown block 'up9'"):
        block_channels_from_config(cfg, "up9")
    proj = {"architectures": ["CLIPTextModelWithProjection"], "hidden_size": 1280, "projection_dim": 1280}
    assert adapter_info_cmd.text_dim_from_config(proj) == 1280
    assert adapter_info_cmd.text_dim_from_config({"hidden_size": 768, "projection_dim": 512}) == 768


def test_missing_sd_config_dir(capsys, tmp_path):
    with pytest.raises(FileNotFoundError, match="diffusers model directory"):
        run(capsys, "--sd-config", str(tmp_path))
