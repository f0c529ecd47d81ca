"""Self-correcting generation (paper Sec. 3.3, Eq. 9) on a tiny random Stable Diffusion, with DPT's matching
score as the objective."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dptune.adapter import DPTProbe
from dptune.backbone import SDBackbone
from dptune.methods.dpt import MatchScore
from dptune.sampling import GuidanceCond, GuidedPipeline, SelfCorrectionConfig, SelfCorrector, make_scheduler
from helpers import make_tiny_adapter

SCHEDULERS = ("ddim", "pndm", "euler", "dpmpp")
PROMPTS = ["a red circle", "two blue squares left of a green triangle"]
SEEDS = [3, 11]


@pytest.fixture
def dpt(guided, tiny_probe):
    """The tiny GuidedPipeline with DPT's matching score (random adapter) as the objective."""
    guided.objective = MatchScore(tiny_probe)
    guided.probe = tiny_probe
    return guided


def gen(dpt, correction=None, steps=4, **kw):
    objective = dpt.objective if correction is not None else None
    return dpt(PROMPTS, seeds=SEEDS, num_inference_steps=steps, correction=correction, objective=objective,
               progress=False, **kw)


def match_cond(probe, prompts=PROMPTS, dtype=None):
    """The GuidanceCond MatchScore scores with: the prompts' U-Net context + pooled text."""
    text = probe.encode_text(prompts)
    cond = GuidanceCond(list(prompts), text.hidden if dtype is None else text.hidden.to(dtype))
    return MatchScore(probe).prepare(cond)


@pytest.mark.parametrize("name", SCHEDULERS)
def test_eta_zero_reproduces_stock_pipeline_exactly(dpt, name):
    dpt.set_scheduler(name)
    ours = gen(dpt, SelfCorrectionConfig(eta=0.0, window=(0.0, 1.0)), steps=5)
    plain = gen(dpt, None, steps=5)
    stock = dpt.pipe(
        PROMPTS,
        generator=[torch.Generator().manual_seed(s) for s in SEEDS],
        num_inference_steps=5,
        output_type="np",
    ).images
    assert ours.shape == (2, 16, 16, 3) and ours.dtype == np.float32
    assert np.array_equal(ours, stock)
    assert np.array_equal(plain, stock)


def test_one_correction_step_increases_the_score(dpt):
    probe = dpt.probe
    text = match_cond(probe)
    t = torch.tensor(500)
    z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))  # (B, 4, h, w)
    cfg = SelfCorrectionConfig(eta=1e-2, window=(0.0, 1.0), normalize_grad=True)
    corrector = SelfCorrector(MatchScore(probe), cfg)
    with torch.no_grad():
        before = corrector.score(z, t, text)  # (B,)
        z_hat = corrector.correct(z, t, text, step_index=0)
        after = corrector.score(z_hat, t, text)
        against = corrector.score(2 * z - z_hat, t, text)  # the opposite move must lower s
    assert (z_hat - z).abs().max() > 0
    assert torch.all(after > before), (before, after)
    assert torch.all(against < before)
    assert torch.allclose(torch.tensor(corrector.history[0].score), before, atol=1e-6)


def test_gradient_respects_scale_model_input(dpt):
    """Euler scales the U-Net input: ds/dz must equal c * ds/dx at x = c z (chain rule). float64 models: the
    random tiny U-Net's input gradients are ~1e-8, where fp32 rounding of x alone changes them by ~20%."""
    dpt.pipe.unet.double()
    dpt.probe.adapter.double()
    sched = make_scheduler("euler", dpt.scheduler.config)
    sched.set_timesteps(10)
    t = sched.timesteps[3]
    scale = lambda x: sched.scale_model_input(x, t)  # noqa: E731
    corrector = SelfCorrector(MatchScore(dpt.probe), SelfCorrectionConfig(window=(0.0, 1.0)))
    text = match_cond(dpt.probe, dtype=torch.float64)
    z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1)) * sched.init_noise_sigma
    c = scale(torch.ones(1)).item()
    g_z, _ = corrector.gradient(z, t, text, scale)
    g_x, _ = corrector.gradient(z * c, t, text, None)
    assert c < 0.5  # the test is only meaningful when the scaling is far from the identity
    assert torch.allclose(g_z, c * g_x, rtol=1e-3, atol=1e-12)
    assert not torch.allclose(g_z, g_x, rtol=0.1, atol=1e-12)  # ignoring the scaling would be caught


@pytest.mark.parametrize("name", SCHEDULERS)
def test_schedulers_run_and_correction_changes_the_image(dpt, name):
    dpt.set_scheduler(name)
    plain = gen(dpt)
    latent = gen(dpt, SelfCorrectionConfig(eta=0.5, window=(0.0, 1.0), normalize_grad=True))
    model_input = gen(
        dpt, SelfCorrectionConfig(eta=0.5, window=(0.0, 1.0), normalize_grad=True, grad_space="model_input")
    )
    assert np.isfinite(latent).all() and np.isfinite(model_input).all()
    assert not np.array_equal(plain, latent)
    assert np.abs(plain - model_input).max() > 1e-3
    assert len(dpt.last_trace) == len(dpt.scheduler.timesteps)  # every step corrected with window (0, 1)


@pytest.mark.parametrize("name", SCHEDULERS)
@pytest.mark.parametrize("steps", [1, 2, 3])
def test_short_trajectories_and_window_ending_at_one(dpt, name, steps):
    dpt.set_scheduler(name)
    out = gen(dpt, SelfCorrectionConfig(eta=0.5, window=(0.0, 1.0)), steps=steps)
    n = len(dpt.scheduler.timesteps)
    assert np.isfinite(out).all()
    assert [r["step"] for r in dpt.last_trace] == list(range(n))
    gen(dpt, SelfCorrectionConfig(eta=0.5, window=(0.5, 1.0)), steps=steps)
    assert [r["step"] for r in dpt.last_trace] == [i for i in range(n) if i / n >= 0.5]


def _spy(dpt):
    """Record the U-Net's CFG-batch inputs and the latents handed to scheduler.step."""
    unet_inputs, step_bases = [], []

    def hook(module, args, kwargs):
        sample = args[0] if args else kwargs["sample"]
        if sample.shape[0] == 2 * len(PROMPTS):  # the CFG pass, not the truncated gradient pass
            unet_inputs.append(sample.detach().clone())

    handle = dpt.pipe.unet.register_forward_pre_hook(hook, with_kwargs=True)
    step = dpt.scheduler.step

    def spy_step(model_output, timestep, sample, *a, **kw):
        step_bases.append(sample.detach().clone())
        return step(model_output, timestep, sample, *a, **kw)

    dpt.scheduler.step = spy_step
    return unet_inputs, step_bases, handle


def test_official_mode_corrects_only_the_conditional_branch(dpt):
    window = (0.0, 1.0)
    results = {}
    for mode in ("paper", "official"):
        dpt.set_scheduler("ddim")  # fresh scheduler: DDIM's scale_model_input is the identity
        inputs, bases, handle = _spy(dpt)
        results[mode] = gen(dpt, SelfCorrectionConfig(eta=0.5, window=window, normalize_grad=True, mode=mode))
        handle.remove()
        uncond, cond = zip(*(x.chunk(2) for x in inputs), strict=True)
        noise = torch.cat(
            [torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(s)) for s in SEEDS]
        )
        if mode == "paper":  # z_hat in both branches and as the step base
            assert all(torch.equal(u, c) for u, c in zip(uncond, cond, strict=True))
            assert all(torch.equal(b, c) for b, c in zip(bases, cond, strict=True))
            assert not torch.equal(uncond[0], noise)
        else:  # uncorrected latent in the unconditional branch and as the step base
            assert torch.equal(uncond[0], noise)
            assert all(not torch.equal(u, c) for u, c in zip(uncond, cond, strict=True))
            assert all(torch.equal(b, u) for b, u in zip(bases, uncond, strict=True))
    assert np.abs(results["paper"] - results["official"]).max() > 1e-4


def test_grad_every_reuses_gradients(dpt):
    out1 = gen(dpt, SelfCorrectionConfig(eta=0.5, window=(0.0, 1.0), normalize_grad=True), steps=5)
    out2 = gen(
        dpt, SelfCorrectionConfig(eta=0.5, window=(0.0, 1.0), normalize_grad=True, grad_every=2), steps=5
    )
    assert [r["reused"] for r in dpt.last_trace] == [False, True, False, True, False]
    assert not np.array_equal(out1, out2)


def test_images_depend_only_on_their_seed(dpt):
    cfg = SelfCorrectionConfig(eta=0.5, window=(0.0, 1.0), normalize_grad=True)
    both = gen(dpt, cfg)
    kw = dict(num_inference_steps=4, correction=cfg, objective=dpt.objective, progress=False)
    alone = dpt(PROMPTS[1:], seeds=SEEDS[1:], **kw)
    split = dpt(PROMPTS, seeds=SEEDS, batch_size=1, **kw)
    np.testing.assert_allclose(alone[0], both[1], atol=1e-5)
    np.testing.assert_allclose(split, both, atol=1e-5)


def test_half_precision_base_gets_fp32_gradient_and_no_parameter_grads(tiny_sd):
    pipe = tiny_sd.to(dtype=torch.float16)
    dpt = GuidedPipeline(pipe)
    dpt.probe = DPTProbe(SDBackbone.from_pipeline(pipe), make_tiny_adapter())
    dpt.objective = MatchScore(dpt.probe)
    out = gen(dpt, SelfCorrectionConfig(eta=0.5, window=(0.0, 1.0)), steps=3)
    assert np.isfinite(out).all()
    assert all(rms > 0 for r in dpt.last_trace for rms in r["grad_rms"])
    assert all(p.grad is None for p in pipe.unet.parameters())
    assert all(p.grad is None for p in dpt.probe.adapter.parameters())
    g, s = SelfCorrector(dpt.objective, SelfCorrectionConfig(), half=True).gradient(
        torch.randn(2, 4, 8, 8, dtype=torch.float16), torch.tensor(500), match_cond(dpt.probe, dtype=torch.float16)
    )
    assert g.dtype == torch.float32 and s.dtype == torch.float32 and g.abs().max() > 0
