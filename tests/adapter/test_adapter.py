"""Discriminative adapter: shapes (tiny and real SD 2.1 block sizes), embeddings, score, temperature, config."""

import math

import pytest
import torch
import torch.nn.functional as F

from dptune.adapter import AdapterConfig, AdapterOutput, DiscriminativeAdapter, parameter_counts
from dptune.losses import text_to_image_loss


def tiny(**kw):
    base = dict(in_channels=64, text_dim=32, d_model=32, heads=4, ffn=64, num_queries=12, num_match_queries=3)
    base.update(kw)
    return DiscriminativeAdapter(AdapterConfig(**base)).eval()


def check_shapes(out: AdapterOutput, b: int, cfg: AdapterConfig):
    n, m, dt = cfg.num_queries, cfg.num_match_queries, cfg.text_dim
    assert out.queries.shape == (b, n, cfg.d_model)
    assert out.match_emb.shape == (b, m, dt)
    assert out.logits_p.shape == (b, n - m)
    assert out.boxes.shape == (b, n - m, 4) and out.boxes.min() >= 0 and out.boxes.max() <= 1
    assert out.obj_emb.shape == (b, n - m, dt)
    assert out.logit_scale.ndim == 0


@pytest.mark.parametrize("hw", [2, 4])
@pytest.mark.parametrize("pos", ["sine", "learned"])
def test_tiny_shapes(hw, pos):
    adapter = tiny(pos_embedding=pos, max_grid=8)
    out = adapter(torch.randn(3, 64, hw, hw), torch.tensor([0, 500, 999]))
    check_shapes(out, 3, adapter.config)


@pytest.mark.parametrize("c, hw", [(1280, 8), (640, 16), (320, 32)])
def test_real_sd21_block_shapes(c, hw):
    torch.manual_seed(0)
    cfg = AdapterConfig(in_channels=c, text_dim=1024)  # paper defaults: d 256, 110 queries, 10 matching
    adapter = DiscriminativeAdapter(cfg).eval()
    with torch.no_grad():
        out = adapter(torch.randn(2, c, hw, hw), 500)  # a scalar timestep is broadcast
    check_shapes(out, 2, cfg)
    assert out.match_emb.shape == (2, 10, 1024) and out.boxes.shape == (2, 100, 4)


def test_default_sd21_mid_parameter_count():
    counts = parameter_counts(DiscriminativeAdapter(AdapterConfig(in_channels=1280, text_dim=1024)))
    assert counts["input_proj"] == 1280 * 256 + 256
    assert counts["queries"] == 110 * 256
    assert sum(v for k, v in counts.items() if k != "total") == counts["total"] == 4_566_790


def test_match_score_is_max_cosine_and_differentiable():
    torch.manual_seed(0)
    adapter = tiny()
    feats = torch.randn(2, 64, 4, 4, requires_grad=True)
    text = torch.randn(2, 32)
    out = adapter(feats, torch.tensor([10, 900]))
    s = adapter.match_score(out, text)  # (B,)
    manual = F.cosine_similarity(out.match_emb, text[:, None, :], dim=-1).amax(-1)
    assert s.shape == (2,) and torch.allclose(s, manual, atol=1e-6)
    multi = adapter.match_score(out.match_emb, torch.stack([text, -text], dim=1))  # (B, K=2)
    assert multi.shape == (2, 2) and torch.allclose(multi[:, 0], s)
    adapter.score(feats, torch.tensor([10, 900]), text).sum().backward()  # self-correction needs d s / d z
    assert feats.grad is not None and feats.grad.abs().sum() > 0


def test_timestep_and_position_embeddings_matter():
    torch.manual_seed(0)
    adapter = tiny(dropout=0.0)
    feats = torch.randn(1, 64, 4, 4)
    with torch.no_grad():
        base = adapter(feats, 100).queries
        other_t = adapter(feats, 800).queries
        flipped = adapter(feats.flip(-1), 100).queries  # same tokens, other positions
    assert not torch.allclose(base, other_t, atol=1e-4)
    # without a position code the encoder/decoder would be permutation invariant over the tokens
    assert not torch.allclose(base, flipped, atol=1e-4)


def test_temperature_learnable_gets_gradient_and_is_clamped():
    adapter = tiny()
    assert isinstance(adapter.logit_scale, torch.nn.Parameter)
    assert any(p is adapter.logit_scale for p in adapter.parameters())
    assert adapter.scale().item() == pytest.approx(1 / 0.07, rel=1e-5)
    out = adapter(torch.randn(2, 64, 2, 2), 5)
    scores = torch.stack([adapter.match_score(out, torch.randn(2, 32)) for _ in range(3)], dim=1)  # (B, 3)
    text_to_image_loss(scores, out.logit_scale).backward()
    assert adapter.logit_scale.grad is not None and adapter.logit_scale.grad.abs().item() > 0
    with torch.no_grad():
        adapter.logit_scale.fill_(math.log(1000.0))
    assert adapter.scale().item() == pytest.approx(100.0)


def test_wrong_inputs_raise_clear_errors():
    adapter = tiny()
    with pytest.raises(ValueError, match="in_channels=32"):
        adapter(torch.randn(1, 32, 4, 4), 1)
    with pytest.raises(ValueError, match="timesteps"):
        adapter(torch.randn(2, 64, 4, 4), torch.tensor([1, 2, 3]))
    out = adapter(torch.randn(2, 64, 2, 2), 1)
    with pytest.raises(ValueError, match="text_dim"):
        adapter.match_score(out, torch.randn(2, 16))


@pytest.mark.parametrize(
    "kw, msg",
    [
        (dict(num_match_queries=110), "smaller than"),
        (dict(heads=7), "divide"),
        (dict(pos_embedding="rope"), "pos_embedding"),
        (dict(in_channels=0), "in_channels"),
        (dict(dropout=1.0), "dropout"),
        (dict(init_temperature=0.001), "max_logit_scale"),
    ],
)
def test_config_validation(kw, msg):
    base = dict(in_channels=1280, text_dim=1024)
    base.update(kw)
    with pytest.raises(ValueError, match=msg):
        AdapterConfig(**base)


def test_config_requires_sizes():
    with pytest.raises(TypeError):
        AdapterConfig()  # in_channels and text_dim have no default


def test_output_select_slices_batched_fields():
    adapter = tiny()
    out = adapter(torch.randn(4, 64, 2, 2), 3)
    part = out.select(slice(1, 3))
    assert part.boxes.shape == (2, 9, 4) and torch.equal(part.match_emb, out.match_emb[1:3])
    assert part.logit_scale is out.logit_scale
