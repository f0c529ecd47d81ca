"""Checkpoint loading: local folders, hub ids, shipped aliases; fast, clear failures offline."""

from __future__ import annotations

import pytest
import torch

from dptune.backbone import ModelNotFoundError, load_backbone, resolve_model


def _no_network(monkeypatch):
    """Any connection attempt fails the test: 'fails fast' means the hub is never tried (diffusers would
    retry it for about a minute)."""
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError(f"a network connection was attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_missing_local_path_fails_before_any_hub_access(tmp_path, monkeypatch):
    _no_network(monkeypatch)
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        load_backbone(str(tmp_path / "no-such-model"))
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_model("./models/nothing-here")


def test_folder_without_model_index(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no model_index.json"):
        resolve_model(tmp_path)


def test_empty_name():
    with pytest.raises(ModelNotFoundError, match="empty model name"):
        resolve_model("  ")


def test_hub_id_offline_and_uncached_is_clear(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.chdir(tmp_path)
    assert resolve_model("someorg/some-model") == ("someorg/some-model", False)
    _no_network(monkeypatch)
    with pytest.raises(ModelNotFoundError, match="not in the local Hugging Face cache.*HF_HUB_OFFLINE"):
        load_backbone("someorg/some-model")


def test_load_saved_pipeline_folder(tiny_pipeline_dir):
    bb = load_backbone(tiny_pipeline_dir)
    assert bb.blocks[:2] == ["down0", "down1"] and bb.text_dim == 32
    z = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        f = bb.features(z, torch.tensor([5]), bb.encode_text(["a red circle"]).hidden, ["mid"])
    assert f.shape == (1, 32, 4, 4)


def test_corrupt_checkpoint_is_reported(tiny_pipeline_dir):
    weights = next((tiny_pipeline_dir / "unet").glob("*.safetensors"))
    weights.write_bytes(b"not a safetensors file")
    with pytest.raises(ModelNotFoundError, match="could not load"):
        load_backbone(tiny_pipeline_dir)
