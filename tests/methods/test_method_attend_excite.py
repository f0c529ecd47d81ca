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


@pytest.mark.parametrize("batched", [True, False])
def test_hooks_restore_the_unet_exactly_even_when_generation_fails(batched):
    """Catches a generator (batched or diffusers' per-image pipeline) that leaves A&E's attention processors
    (and their attention store) in the shared U-Net: after a run -- and after one that raises half-way -- the
    processors are the same objects and the U-Net's output is bit-identical."""
    ctx, unet = _tiny_ae()
    before = dict(unet.attn_processors)
    reference = unet_output(unet)
    run = parse_method(f"attend-excite:batched={batched}")
    gen = run.method.generator(run.config, ctx)
    gen(["a red circle", "a blue square"], [0, 1])
    assert {k: id(v) for k, v in unet.attn_processors.items()} == {k: id(v) for k, v in before.items()}
    bad = parse_method(f"attend-excite:batched={batched},token_indices=9")  # past the words: raises mid-way
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
    # a step well inside the loss's basin on the shipped model (measured: 0.110 -> 0.067 at 5; 20 overshoots)
    moved = (latent - 5.0 * grad).detach().requires_grad_(True)
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


# 4 prompts with different subjects and token counts, 1 without subjects; refinement at steps 0 and 3 of 8
# (at most 5 updates each), where samples stop early, run to the cap or are not refined at all
SHAPES = ["three blue squares", "a red circle to the left of a blue square", "a red circle and a green triangle",
          "two green triangles above a yellow circle", "to the left of"]
# thresholds at which, on the shipped model, a refinement has a sample that needs no update, one that stops
# early and one that runs to the cap (measured on the v2 model of 2026-12-05: step 0 updates 0 / 3 / 4 / 2, step
# 3 updates 0 / 0 / 5 / 3)
SHORT = "max_refinement_steps=5,thresholds=0.8+0.9,threshold_steps=0+20"


def _log_refinements(pipe, patch) -> list[tuple[int, int]]:
    """(timestep, updates) of each refinement diffusers' per-image pipeline runs; its loop evaluates the loss
    once per update plus once at the end."""
    log, evals = [], []
    refine, aggregate = pipe._perform_iterative_refinement_step, pipe._aggregate_and_get_max_attention_per_token

    def counted_aggregate(**kw):
        evals.append(1)
        return aggregate(**kw)

    def counted_refine(**kw):
        evals.clear()
        out = refine(**kw)
        log.append((int(kw["t"]), len(evals) - 1))
        return out

    patch.setattr(pipe, "_aggregate_and_get_max_attention_per_token", counted_aggregate)
    patch.setattr(pipe, "_perform_iterative_refinement_step", counted_refine)
    return log


@pytest.fixture(scope="module")
def shapes_runs():
    """The SHAPES prompts on the shipped model by the batched sampler and by diffusers' per-image pipeline."""
    ctx = GenerationContext("shapesworld", steps=8)
    runs = [parse_method(f"attend-excite:batched={b},{SHORT}") for b in (True, False)]
    batched, per_image = [r.method.generator(r.config, ctx) for r in runs]
    seeds = list(range(len(SHAPES)))
    with pytest.MonkeyPatch.context() as patch:
        log = _log_refinements(per_image.pipe, patch)
        theirs = per_image(SHAPES, seeds)
    ours = batched(SHAPES, seeds)
    return dict(ours=ours, theirs=theirs, log=log, counts=batched.batched.refinements, ctx=ctx, gen=batched,
                timesteps=[int(t) for t in per_image.pipe.scheduler.timesteps], seeds=seeds)


def test_batched_gives_the_images_of_diffusers_per_image_pipeline(shapes_runs):
    """Catches a batched sampler that mixes samples up (another row's prompt, subjects or token count, maps
    averaged over the batch) or computes a step unlike diffusers: same images as the per-image pipeline up to
    batch-size rounding (max seen 1.4e-5), and bit for bit for a batch of one."""
    r = shapes_runs
    assert [len(d["indices"]) for d in r["gen"].last_subjects] == [1, 2, 2, 2, 0]
    np.testing.assert_allclose(r["ours"], r["theirs"], rtol=0, atol=1e-3)
    assert np.abs(r["ours"][:4] - BaseGenerator(r["ctx"])(SHAPES[:4], r["seeds"][:4])).mean() > 1e-3  # excited
    np.testing.assert_array_equal(r["ours"][4:], BaseGenerator(r["ctx"])(SHAPES[4:], r["seeds"][4:]))
    alone = r["gen"](SHAPES[1:2], r["seeds"][1:2])  # batch of one: diffusers' arithmetic exactly
    np.testing.assert_allclose(alone, r["theirs"][1:2], rtol=0, atol=1e-6)


def test_refinement_stops_each_sample_where_diffusers_does(shapes_runs):
    """Catches refinement that keeps updating samples already at the threshold (or stops them all together):
    in one refinement a sample stops early, one runs to the cap and one is not refined, and every sample
    makes exactly as many updates as in diffusers' per-image loop."""
    r = shapes_runs
    counts, cap = r["counts"], 5  # {step: updates per sample}
    assert sorted(counts) == [0, 3]
    assert any(0 in c and cap in c and any(0 < n < cap for n in c) for c in counts.values()), counts
    expected = [(r["timesteps"][step], counts[step][k]) for k in range(4) for step in sorted(counts)
                if counts[step][k]]  # diffusers: image by image, refinements in step order
    assert r["log"] == expected


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
