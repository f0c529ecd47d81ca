"""Attend-and-Excite (``attend-excite``): subject tokens, the loss, hooks that restore the U-Net, end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dptune.methods import GenerationContext, parse_method
from dptune.methods.attend_excite.config import AttendExciteConfig
from dptune.methods.attend_excite.pipeline import (
    AttendExcitePipeline,
    attention_maxima,
    excite_loss,
    pick_resolution,
)
from dptune.methods.attend_excite.subjects import subject_tokens, subject_words
from dptune.methods.base import BaseGenerator
from helpers import unet_output

PAPER_PROMPTS = {
    "three blue squares": ["squares"],
    "a red circle to the left of a blue square": ["circle", "square"],
    "a red circle and a green triangle": ["circle", "triangle"],
    "a photo of a dog and a cat": ["dog", "cat"],
    "an astronaut riding a horse": ["astronaut", "horse"],
}


@pytest.mark.parametrize("prompt", list(PAPER_PROMPTS))
def test_subject_rule_picks_the_nouns(prompt):
    words = prompt.split()
    assert [words[i] for i in subject_words(prompt)] == PAPER_PROMPTS[prompt]


def test_subject_tokens_are_positions_of_the_first_token_after_bos(tiny_parts):
    tok = tiny_parts["tokenizer"]
    indices = subject_tokens("a red circle to the left of a blue square", tok)
    ids = tok("a red circle to the left of a blue square").input_ids
    assert indices == [3, 10]
    assert [tok.convert_ids_to_tokens(ids[i]) for i in indices] == ["circle</w>", "square</w>"]


def test_schedule_scales_the_paper_steps_and_accepts_the_dict_form():
    cfg = AttendExciteConfig(thresholds={0: 0.05, 10: 0.5, 20: 0.8})
    assert cfg.schedule(50) == (25, {0: 0.05, 10: 0.5, 20: 0.8})
    assert cfg.schedule(25) == (13, {0: 0.05, 5: 0.5, 10: 0.8})
    assert AttendExciteConfig(thresholds={}).schedule(1) == (1, {})
    assert parse_method("attend-excite:thresholds=,threshold_steps=,token_indices=2+5").config.token_indices == [2, 5]
    with pytest.raises(ValueError, match="same length"):
        AttendExciteConfig(thresholds=(0.5,))
    with pytest.raises(ValueError, match="kernel_size"):
        AttendExciteConfig(kernel_size=4)
    with pytest.raises(ValueError, match="positions >= 1"):
        AttendExciteConfig(token_indices=[0])


def test_loss_matches_diffusers_when_all_tokens_count_and_excludes_padding():
    """Catches a softmax over the wrong positions: with n_tokens = L it must equal diffusers' released loss
    (BOS and the last position dropped); with the real prompt length, padding positions (which here carry
    most of the attention) must not dilute the subject's maximum."""
    from diffusers.pipelines.deprecated.stable_diffusion_attend_and_excite import (
        pipeline_stable_diffusion_attend_and_excite as ae,
    )

    g = torch.Generator().manual_seed(0)
    maps = torch.rand(8, 8, 16, generator=g).softmax(-1)  # (r, r, L)
    ours = attention_maxima(maps.clone(), [2, 4], n_tokens=16)
    theirs = ae.StableDiffusionAttendAndExcitePipeline._compute_max_attention_per_index(maps.clone(), [2, 4])
    torch.testing.assert_close(ours, torch.stack(theirs))
    planted = torch.zeros(4, 4, 16)
    planted[:, :, 6:] = 0.05  # padding after EOS (position 5) takes most of the mass
    planted[1, 1, 2] = 0.05  # the subject (position 2) peaks at one pixel
    short = attention_maxima(planted, [2], n_tokens=6, sigma=0.01, kernel_size=1)
    assert short.item() > 0.9  # among the 4 words the subject dominates its pixel
    assert attention_maxima(planted, [2], n_tokens=16, sigma=0.01, kernel_size=1).item() < 0.5
    assert excite_loss(torch.tensor([0.9, 0.3])).item() == pytest.approx(0.7)
    with pytest.raises(ValueError, match="token_indices"):
        attention_maxima(planted, [5], n_tokens=6)


def test_resolution_is_the_wanted_side_or_the_largest_smaller_one(tiny_parts):
    unet = tiny_parts["unet"]  # cross-attention only in the first down block: side = latent side
    assert pick_resolution(unet, 8, 16) == 8
    assert pick_resolution(unet, 32, 16) == 16  # hypothetical 64 px input: side 32 only -> smallest
    assert pick_resolution(unet, 8, 8) == 8


def _tiny_ae(cfg: AttendExciteConfig | None = None):
    ctx = GenerationContext("tiny-random", steps=4, guidance=4.0)
    return ctx, ctx.backbone().unet


def test_hooks_restore_the_unet_exactly_even_when_generation_fails():
    """Catches a generator that leaves A&E's attention processors (and their attention store) in the shared
    U-Net: after a run -- and after one that raises half-way -- the processors are the same objects and the
    U-Net's output is bit-identical."""
    ctx, unet = _tiny_ae()
    before = dict(unet.attn_processors)
    reference = unet_output(unet)
    gen = parse_method("attend-excite").method.generator(parse_method("attend-excite").config, ctx)
    gen(["a red circle"], [0])
    assert {k: id(v) for k, v in unet.attn_processors.items()} == {k: id(v) for k, v in before.items()}
    bad = parse_method("attend-excite:token_indices=9")  # past the prompt's words: the loss raises mid-way
    with pytest.raises(ValueError, match="token_indices"):
        bad.method.generator(bad.config, ctx)(["a red circle"], [0])
    assert {k: id(v) for k, v in unet.attn_processors.items()} == {k: id(v) for k, v in before.items()}
    assert not unet.training
    torch.testing.assert_close(unet_output(unet), reference, rtol=0, atol=0)


def test_an_excite_step_lowers_the_loss_on_a_fixed_latent():
    """Catches a sign error or a gradient through the wrong tensor in the latent update (z - alpha grad L)."""
    ctx = GenerationContext("shapesworld", steps=25)
    pipe = AttendExcitePipeline.over(ctx.pipeline(None).pipe, AttendExciteConfig())
    prompt, indices = "a red circle and a green triangle", [3, 7]
    pipe.n_tokens = len(pipe.tokenizer(prompt).input_ids)
    hidden = ctx.backbone().encode_text([prompt]).hidden  # (1, L, D)
    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    t = torch.tensor(901)
    loss = pipe.loss_at(latent, t, hidden, indices, res=8)
    (grad,) = torch.autograd.grad(loss, [latent])
    moved = (latent - 20.0 * grad).detach().requires_grad_(True)
    after = pipe.loss_at(moved, t, hidden, indices, res=8)
    assert loss.item() > 0
    assert after.item() < loss.item() - 1e-3


def test_end_to_end_on_shapesworld_same_noise_as_base():
    """Two images on the shipped model; with no update and no refinement A&E is the base sampler (same
    seeds -> same initial noise and trajectory, up to attention-kernel rounding)."""
    ctx = GenerationContext("shapesworld", steps=8)
    run = parse_method("attend-excite")
    gen = run.method.generator(run.config, ctx)
    prompts = ["three blue squares", "a red circle to the left of a blue square"]
    images = gen(prompts, [0, 1])
    assert images.shape == (2, 32, 32, 3) and 0.0 <= images.min() and images.max() <= 1.0
    assert [s["tokens"] for s in gen.last_subjects] == [["squares</w>"], ["circle</w>", "square</w>"]]
    assert "attention 8x8" in gen.description
    base = BaseGenerator(ctx)(prompts, [0, 1])
    assert np.abs(images - base).mean() > 1e-3  # the updates changed the images
    idle = parse_method("attend-excite:max_iter_to_alter=0,thresholds=,threshold_steps=")
    same = idle.method.generator(idle.config, ctx)(prompts[:1], [0])
    np.testing.assert_allclose(same, base[:1], atol=1e-4)


def test_prompt_without_subject_uses_the_plain_sampler():
    ctx, _ = _tiny_ae()
    run = parse_method("attend-excite")
    gen = run.method.generator(run.config, ctx)
    out = gen(["to the left of"], [3])
    np.testing.assert_array_equal(out, BaseGenerator(ctx)(["to the left of"], [3]))
    assert gen.last_subjects[0]["indices"] == []


def test_demo_hook_trains_nothing(tmp_path):
    from dptune.methods import get_method
    from dptune.methods.registry import DemoSetup

    runs = get_method("attend-excite").demo(DemoSetup(out_dir=tmp_path, model="shapesworld", quick=True))
    assert [r.method.name for r in runs] == ["attend-excite"] and not list(tmp_path.iterdir())
    assert runs[0].label == "attend-excite" and runs[0].config.max_refinement_steps == 5  # the demo's budget cap
    assert runs[0].config.thresholds == (0.05, 0.5, 0.8)  # the paper's schedule otherwise
