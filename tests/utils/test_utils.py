"""Shared helpers: atomic artefact writes, typed configs, the shipped paper configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dptune.training import TrainConfig
from dptune.utils.config import from_dict, load_config_file
from dptune.utils.io import ArtefactError, atomic_write, load_json, load_tensors, save_json, save_tensors
from helpers import REPO

CONFIGS = REPO / "configs"


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "x.json"
    save_json(target, {"a": 1})

    def broken(tmp):
        Path(tmp).write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, broken)
    assert load_json(target) == {"a": 1}  # old content intact
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temp file left


def test_tensors_roundtrip_and_corruption(tmp_path):
    save_tensors(tmp_path / "t.safetensors", {"w": torch.arange(6.0).view(2, 3)})
    assert torch.equal(load_tensors(tmp_path / "t.safetensors")["w"], torch.arange(6.0).view(2, 3))
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(ArtefactError, match="corrupt"):
        load_tensors(tmp_path / "bad.safetensors")
    with pytest.raises(ArtefactError, match="does not exist"):
        load_tensors(tmp_path / "missing.safetensors")
    (tmp_path / "bad.json").write_text("{oops")
    with pytest.raises(ArtefactError, match="not valid JSON"):
        load_json(tmp_path / "bad.json")


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match=r"unknown TrainConfig option\(s\) \['lerning_rate'\]"):
        from_dict(TrainConfig, {"lerning_rate": 1})


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("paper_*.yaml")), ids=lambda p: p.name)
def test_paper_configs_are_valid(path):
    cfg = from_dict(TrainConfig, load_config_file(path))
    assert cfg.data == "coco" and cfg.blocks == ["mid"] and cfg.lr == 1e-4 and cfg.grad_clip == 0.1
    assert cfg.stage == ("probe" if "stage1" in path.name else "tune")


def test_shapesworld_probe_config_matches_the_demo(tmp_path):
    """configs/shapesworld_probe.yaml reproduces the demo's stage 1: the two must not drift apart."""
    from dptune.demo.run import DemoConfig, _train_configs

    cfg = from_dict(TrainConfig, load_config_file(CONFIGS / "shapesworld_probe.yaml"))
    demo, _ = _train_configs(DemoConfig(), tmp_path)
    keys = ("stage", "model", "data", "data_size", "blocks", "adapter_d_model", "adapter_ffn", "adapter_heads",
            "adapter_queries", "adapter_dropout", "steps", "batch_size", "lr", "grad_clip", "rec_t_max",
            "rec_weight", "itm_weight", "t_min", "t_max", "seed")
    assert {k: getattr(cfg, k) for k in keys} == {k: getattr(demo, k) for k in keys}
