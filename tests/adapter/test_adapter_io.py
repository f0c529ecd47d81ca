"""save_adapter / load_adapter: round trip (logit scale included), mismatch and corruption errors."""

import json

import pytest
import torch

from dptune.adapter import AdapterConfig, AdapterMismatchError, DiscriminativeAdapter, load_adapter, save_adapter
from dptune.utils.io import ArtefactError


def make(**kw):
    base = dict(in_channels=64, text_dim=32, d_model=32, heads=4, ffn=64, num_queries=12, num_match_queries=3)
    base.update(kw)
    return DiscriminativeAdapter(AdapterConfig(**base))


def test_round_trip_restores_weights_and_logit_scale(tmp_path):
    torch.manual_seed(0)
    adapter = make(pos_embedding="learned", max_grid=4)
    with torch.no_grad():
        adapter.logit_scale.fill_(3.21)  # not the init value log(1/0.07) = 2.66
    save_adapter(adapter, tmp_path / "ad")
    assert sorted(p.name for p in (tmp_path / "ad").iterdir()) == ["adapter.safetensors", "adapter_config.json"]
    loaded = load_adapter(tmp_path / "ad", expect_in_channels=64, expect_text_dim=32)
    assert loaded.config == adapter.config
    assert loaded.logit_scale.item() == pytest.approx(3.21)
    for (k, v), (k2, v2) in zip(adapter.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2)
    feats = torch.randn(2, 64, 3, 3)
    adapter.eval(), loaded.eval()
    with torch.no_grad():
        assert torch.equal(adapter(feats, 7).match_emb, loaded(feats, 7).match_emb)


def test_mismatch_names_what_it_was_made_for(tmp_path):
    save_adapter(make(), tmp_path)
    with pytest.raises(AdapterMismatchError, match=r"in_channels=64 but the probed block has 1280"):
        load_adapter(tmp_path, expect_in_channels=1280)
    with pytest.raises(AdapterMismatchError, match=r"text_dim=32 but .* has 1024"):
        load_adapter(tmp_path, expect_in_channels=64, expect_text_dim=1024)
    with pytest.raises(ValueError):  # also a ValueError, so the CLI prints it as one line
        load_adapter(tmp_path, expect_text_dim=768)


def test_missing_and_corrupt_artefacts(tmp_path):
    with pytest.raises(ArtefactError, match="does not exist"):
        load_adapter(tmp_path / "nope")
    save_adapter(make(), tmp_path)
    (tmp_path / "adapter.safetensors").write_bytes(b"garbage")
    with pytest.raises(ArtefactError, match="safetensors"):
        load_adapter(tmp_path)
    (tmp_path / "adapter_config.json").write_text(json.dumps({"in_channels": 3}))
    with pytest.raises(ArtefactError, match="not a dptune adapter config"):
        load_adapter(tmp_path)


def test_weights_from_other_config_rejected(tmp_path):
    save_adapter(make(), tmp_path / "a")
    save_adapter(make(num_queries=20), tmp_path / "b")
    (tmp_path / "b" / "adapter_config.json").replace(tmp_path / "a" / "adapter_config.json")
    with pytest.raises(ArtefactError, match="does not fit its config"):
        load_adapter(tmp_path / "a")
