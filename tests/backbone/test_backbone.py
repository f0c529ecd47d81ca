"""Backbone: text/image encoding, noise, feature taps, truncated forward, fusion, hook hygiene."""

from __future__ import annotations

import pytest
import torch

from dptune.backbone import UnknownBlockError, feature_taps, fuse_features, run_tapped


def _inputs(bb, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, 4, bb.latent_size, bb.latent_size, generator=g)
    t = torch.tensor([10, 700][:batch])
    text = bb.encode_text(["a red circle", "the blue square"][:batch])
    return z, t, text


def test_block_names_and_channels(tiny_backbone):
    assert tiny_backbone.blocks == ["down0", "down1", "mid", "up0", "up1"]
    z, t, text = _inputs(tiny_backbone)
    with torch.no_grad():
        for b in tiny_backbone.blocks:
            f = tiny_backbone.features(z, t, text.hidden, [b])
            assert f.shape[1] == tiny_backbone.block_channels(b), b


def test_unknown_block_lists_valid_names(tiny_backbone):
    z, t, text = _inputs(tiny_backbone)
    with pytest.raises(UnknownBlockError, match=r"up7.*valid names.*down0.*mid.*up1"):
        tiny_backbone.features(z, t, text.hidden, ["up7"])
    with pytest.raises(UnknownBlockError, match="no block requested"):
        tiny_backbone.features(z, t, text.hidden, [])


@pytest.mark.parametrize("block", ["down0", "down1", "mid", "up0", "up1"])
def test_truncated_equals_full_forward(tiny_backbone, block):
    z, t, text = _inputs(tiny_backbone)
    with torch.no_grad():
        full = tiny_backbone.features(z, t, text.hidden, [block], truncate=False)
        trunc = tiny_backbone.features(z, t, text.hidden, [block], truncate=True)
    assert torch.equal(full, trunc)


def test_truncation_skips_later_blocks(tiny_backbone):
    unet = tiny_backbone.unet
    calls = []
    handles = [blk.register_forward_hook(lambda m, a, o, i=i: calls.append(i)) for i, blk in enumerate(unet.up_blocks)]
    handles.append(unet.conv_out.register_forward_hook(lambda m, a, o: calls.append("out")))
    z, t, text = _inputs(tiny_backbone)
    try:
        with torch.no_grad():
            tiny_backbone.features(z, t, text.hidden, ["mid"])
            assert calls == []  # no up block, no output conv
            tiny_backbone.features(z, t, text.hidden, ["mid"], truncate=False)
            assert calls == [0, 1, "out"]
    finally:
        for h in handles:
            h.remove()


def test_hooks_removed_even_on_exception(tiny_backbone):
    unet = tiny_backbone.unet

    def n_hooks():
        return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in unet.modules())

    before = n_hooks()
    with pytest.raises(RuntimeError, match="boom"):
        with feature_taps(unet, ["mid", "up0"]):
            assert n_hooks() == before + 2
            raise RuntimeError("boom")
    assert n_hooks() == before


def test_full_forward_through_taps_returns_noise(tiny_backbone):
    z, t, text = _inputs(tiny_backbone)
    with torch.no_grad():
        feats, eps = tiny_backbone.features_and_noise(z, t, text.hidden, ["mid"])
        ref = tiny_backbone.predict_noise(z, t, text.hidden)
    assert torch.equal(eps, ref)
    assert feats.shape == (2, 32, 4, 4)


def test_multi_block_fusion(tiny_backbone):
    z, t, text = _inputs(tiny_backbone)
    with torch.no_grad():
        feats = tiny_backbone.features(z, t, text.hidden, ["up1", "mid", "down0"], fuse=None)
        assert list(feats) == ["down0", "mid", "up1"]  # execution order
        cat = fuse_features(feats, "concat")
        assert cat.shape == (2, 16 + 32 + 16, 8, 8)  # resized to the largest map
        summed = tiny_backbone.features(z, t, text.hidden, ["down0", "up1"], fuse="sum")
    assert summed.shape == (2, 16, 8, 8)
    up = torch.nn.functional.interpolate(feats["down0"], size=(8, 8), mode="bilinear")
    assert torch.allclose(summed, up + feats["up1"])
    with pytest.raises(ValueError, match="equal channel counts.*concat"):
        fuse_features(feats, "sum")


def test_features_are_differentiable_wrt_latent(tiny_backbone):
    z, t, text = _inputs(tiny_backbone)
    z.requires_grad_(True)
    f = tiny_backbone.features(z, t, text.hidden.detach(), ["mid"])
    (g,) = torch.autograd.grad(f.square().sum(), z)
    assert g.abs().sum() > 0


def test_encode_text_hidden_and_pooled(tiny_backbone):
    text = tiny_backbone.encode_text(["a red circle", "a blue square"])
    assert text.hidden.shape == (2, 16, 32) and text.pooled.shape == (2, tiny_backbone.text_dim)
    assert not torch.allclose(text.pooled[0], text.pooled[1])
    with pytest.warns(UserWarning, match="truncated"):
        tiny_backbone.encode_text([" ".join(["red"] * 40)])


def test_encode_images_uses_config_scaling_factor(tiny_backbone):
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        tiny_backbone.vae.config.scaling_factor = 1.0
        a = tiny_backbone.encode_images(x)
        tiny_backbone.vae.config.scaling_factor = 0.5
        b = tiny_backbone.encode_images(x)
        rec = tiny_backbone.decode_latents(b)
    assert torch.allclose(b, a * 0.5)
    assert rec.shape == x.shape and rec.min() >= -1 and rec.max() <= 1


def test_add_noise_and_targets(tiny_backbone):
    z = torch.randn(2, 4, 8, 8)
    eps = torch.randn_like(z)
    t = torch.tensor([0, 999])
    zt = tiny_backbone.add_noise(z, eps, t)
    abar = tiny_backbone.noise_scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
    assert torch.allclose(zt, abar.sqrt() * z + (1 - abar).sqrt() * eps, atol=1e-5)
    assert torch.equal(tiny_backbone.denoise_target(z, eps, t), eps)
    tiny_backbone.noise_scheduler.register_to_config(prediction_type="v_prediction")
    v = tiny_backbone.denoise_target(z, eps, t)
    assert torch.allclose(v, abar.sqrt() * eps - (1 - abar).sqrt() * z, atol=1e-5)


def test_run_tapped_reports_unreached_block(tiny_backbone):
    z, t, text = _inputs(tiny_backbone)

    class Skip(torch.nn.Module):  # a U-Net wrapper that never calls the mid block
        def __init__(self, unet):
            super().__init__()
            self.down_blocks, self.mid_block, self.up_blocks = unet.down_blocks, unet.mid_block, unet.up_blocks

        def forward(self, *a, **k):
            return None

    fake = Skip(tiny_backbone.unet)
    with feature_taps(fake, ["mid"], truncate=False) as taps:
        with pytest.raises(RuntimeError, match="without reaching block"):
            run_tapped(fake, taps, z, t, encoder_hidden_states=text.hidden)
