"""The relation-text experiment's own modules (experiments/relation_text/, outside the library): cross-attention
capture (cross_attention.py) and the token grounding loss (attention.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from helpers import REPO

EXPERIMENTS = REPO / "experiments"
sys.path.insert(0, str(EXPERIMENTS))
from relation_text.attention import token_attention_loss  # noqa: E402
from relation_text.cross_attention import capture_cross_attention, cross_attention_layers  # noqa: E402


def _run_unet(unet, batch: int = 2, text_len: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, 4, 8, 8, generator=g)
    hidden = torch.randn(batch, text_len, unet.config.cross_attention_dim, generator=g)
    return unet(z, torch.tensor([10] * batch), hidden).sample


def test_maps_match_diffusers_attention_scores(tiny_parts):
    """The recomputed maps equal diffusers' own softmax of the recorded projections, rows sum to 1."""
    unet = tiny_parts["unet"]
    with capture_cross_attention(unet) as store:
        _run_unet(unet)
    maps = store.maps()
    assert set(maps) == set(cross_attention_layers(unet))
    for name, m in maps.items():
        attn = store.layers[name]
        q, k = store.queries[name], store.keys[name]
        ref = attn.get_attention_scores(attn.head_to_batch_dim(q), attn.head_to_batch_dim(k))  # (B*h, N, L)
        ref = ref.view(q.shape[0], attn.heads, q.shape[1], k.shape[1]).mean(1)
        torch.testing.assert_close(m, ref)
        assert m.shape == (2, q.shape[1], 16)
        torch.testing.assert_close(m.sum(-1), torch.ones(2, q.shape[1]))


def test_side_filter_and_hooks_removed(tiny_parts):
    unet = tiny_parts["unet"]
    with pytest.raises(RuntimeError, match="no cross-attention recorded"), capture_cross_attention(unet) as store:
        store.maps()
    with capture_cross_attention(unet) as store:
        _run_unet(unet)
    sides = {int(m.shape[1] ** 0.5) for m in store.maps().values()}
    assert all(set(store.maps(s)) and all(m.shape[1] == s * s for m in store.maps(s).values()) for s in sides)
    assert store.maps(side=3) == {}
    store.clear()
    _run_unet(unet)  # outside the context: nothing is recorded any more
    assert not store.queries
    layer = next(iter(store.layers.values()))
    assert not layer.to_q._forward_hooks and not layer.to_k._forward_hooks


def test_no_cross_attention_is_an_error():
    with pytest.raises(ValueError, match="no text cross-attention"), capture_cross_attention(torch.nn.Linear(2, 2)):
        pass


def test_gradients_flow_through_the_maps(tiny_parts):
    unet = tiny_parts["unet"]
    with capture_cross_attention(unet) as store:
        _run_unet(unet)
    sum(m[..., 1].sum() for m in store.maps().values()).backward()
    assert next(iter(store.layers.values())).to_k.weight.grad.abs().sum() > 0


def _two_object_case():
    """4x4 image (N = 16), 5 text tokens; object 0 is token 1 at position 0, object 1 token 3 at position 15."""
    masks = torch.zeros(1, 2, 16)
    masks[0, 0, 0], masks[0, 1, 15] = 1.0, 1.0
    tokens = torch.zeros(1, 2, 5, dtype=torch.bool)
    tokens[0, 0, 1], tokens[0, 1, 3] = True, True
    return masks, tokens


def test_token_loss_values():
    masks, tokens = _two_object_case()
    grounded = torch.full((1, 16, 5), 0.01)
    grounded[0, 0, 1], grounded[0, 15, 3] = 1.0, 1.0  # each word looks (almost) only at its object
    uniform = torch.full((1, 16, 5), 0.2)
    assert token_attention_loss(grounded, masks, tokens) < 0.03
    # uniform attention: 1/16 of the mass inside each one-position mask
    torch.testing.assert_close(token_attention_loss(uniform, masks, tokens), torch.tensor((1 - 1 / 16) ** 2))
    swapped = token_attention_loss(grounded, masks.flip(1), tokens)  # each word looks at the other object
    assert swapped > 0.9


def test_token_loss_skips_absent_objects_and_checks_shapes():
    masks, tokens = _two_object_case()
    maps = torch.rand(1, 16, 5, requires_grad=True)
    only_first = token_attention_loss(maps, masks * torch.tensor([1.0, 0.0]).view(1, 2, 1), tokens)
    a = maps[0, :, 1]
    torch.testing.assert_close(only_first, (1 - a[0] / a.sum()) ** 2)
    empty = token_attention_loss(maps, torch.zeros_like(masks), tokens)
    assert empty.item() == 0.0 and empty.requires_grad
    with pytest.raises(ValueError, match="resize the masks"):
        token_attention_loss(maps, torch.zeros(1, 2, 9), tokens)
    with pytest.raises(ValueError, match="expected maps"):
        token_attention_loss(maps, masks, tokens[..., :3])


def test_experiment_script_imports():
    """The script's imports (library and its own modules) still resolve: --help runs them all, then exits."""
    script = EXPERIMENTS / "relation_text" / "exp_relation_text_separation.py"
    proc = subprocess.run([sys.executable, str(script), "--help"], cwd=EXPERIMENTS.parent, capture_output=True,
                          text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "--grounding-weight" in proc.stdout
