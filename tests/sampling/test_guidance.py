"""The guidance contract: any GuidanceObjective plugs into the self-correcting sampler, and Eq. 9's step has
exactly the size the paper gives (planted objectives with known gradients)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dptune.sampling import GuidanceCond, GuidanceObjective, SelfCorrectionConfig, SelfCorrector, make_scheduler

PROMPTS = ["a red circle", "two blue squares left of a green triangle"]


class Linear:
    """score(x) = <w, x> per sample: d score / dx = w exactly."""

    def __init__(self, w: torch.Tensor) -> None:
        self.w = w  # (B, C, h, w)

    def score(self, x, t, cond):
        return (self.w * x).flatten(1).sum(1)  # (B,)


def _cond(b: int = 2) -> GuidanceCond:
    return GuidanceCond(PROMPTS[:b], torch.zeros(b, 4, 8))


def test_eq9_moves_the_latent_by_exactly_eta_times_the_gradient():
    """Catches a wrong step size (e.g. a doubled step) or a wrong sign: z_hat = z + eta * ds/dz."""
    g = torch.Generator().manual_seed(0)
    w, z = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    corrector = SelfCorrector(Linear(w), SelfCorrectionConfig(eta=0.3, window=(0.0, 1.0)))
    z_hat = corrector.correct(z, torch.tensor(500), _cond(), step_index=0)
    torch.testing.assert_close(z_hat, z + 0.3 * w)


def test_eq9_with_normalised_gradient_moves_by_eta_times_the_unit_rms_gradient():
    g = torch.Generator().manual_seed(1)
    w, z = torch.randn(2, 4, 8, 8, generator=g) * 5, torch.randn(2, 4, 8, 8, generator=g)
    corrector = SelfCorrector(Linear(w), SelfCorrectionConfig(eta=0.05, window=(0.0, 1.0), normalize_grad=True))
    z_hat = corrector.correct(z, torch.tensor(500), _cond(), step_index=0)
    rms = w.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()  # (B, 1, 1, 1)
    torch.testing.assert_close(z_hat, z + 0.05 * w / rms)
    assert (z_hat - z).pow(2).mean(dim=(1, 2, 3)).sqrt().tolist() == pytest.approx([0.05, 0.05], rel=1e-5)


@pytest.mark.parametrize(("space", "normalize"), [("latent", False), ("model_input", False), ("model_input", True)])
def test_input_space_factor_on_euler_where_the_input_scaling_is_not_one(space, normalize):
    """Euler feeds the model x = c z with c = 1 / sqrt(sigma^2 + 1) < 1. With s(x) = <w, x>: ds/dz = c w, so
    'latent' steps by eta c w; 'model_input' applies Eq. 9 to x and maps back: z + eta w / c (unit-RMS: the RMS
    cancels one c, z + eta unit(w) / c). A wrong factor (c, c^2, 1) fails here."""
    sched = make_scheduler("euler", make_scheduler("ddim", {}).config)
    sched.set_timesteps(10)
    t = sched.timesteps[2]
    c = sched.scale_model_input(torch.ones(1), t).item()
    assert c < 0.5  # the check is only meaningful when the scaling is far from one
    g = torch.Generator().manual_seed(2)
    w, z = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 4, 8, 8, generator=g)
    cfg = SelfCorrectionConfig(eta=0.2, window=(0.0, 1.0), grad_space=space, normalize_grad=normalize)
    z_hat = SelfCorrector(Linear(w), cfg).correct(z, t, _cond(1), 0, lambda x: sched.scale_model_input(x, t))
    grad = c * w  # ds/dz through the scaling
    unit = grad / grad.pow(2).mean().sqrt()
    want = {("latent", False): z + 0.2 * grad, ("model_input", False): z + 0.2 * grad / c**2,
            ("model_input", True): z + 0.2 * unit / c}[space, normalize]
    torch.testing.assert_close(z_hat, want)


def test_grad_every_reuses_the_last_computed_direction():
    """grad_every=2: steps 0, 2 compute ds/dz, steps 1, 3 reuse the previous direction (not a fresh one)."""
    calls = []

    class Counting(Linear):
        def score(self, x, t, cond):
            calls.append(int(t))
            return super().score(x, t, cond) * (1 + int(t) / 1000)  # the gradient depends on t

    w = torch.ones(1, 4, 8, 8)
    corrector = SelfCorrector(Counting(w), SelfCorrectionConfig(eta=1.0, window=(0.0, 1.0), grad_every=2))
    z = torch.zeros(1, 4, 8, 8)
    moves = []
    for i, t in enumerate([900, 700, 500, 300]):
        z_new = corrector.correct(z, torch.tensor(t), _cond(1), step_index=i)
        moves.append((z_new - z).mean().item())
        z = z_new
    assert calls == [900, 500]
    assert moves == pytest.approx([1.9, 1.9, 1.5, 1.5])
    assert [r.reused for r in corrector.history] == [False, True, False, True]


class CLIPSimilarity:
    """A third objective, neither DPT's: cosine(CLIP image of the decoded latent, CLIP text) -- from a tiny
    random ``transformers`` CLIP config, decoded with the pipeline's VAE."""

    def __init__(self, vae, size: int = 32) -> None:
        from transformers import CLIPConfig, CLIPModel

        torch.manual_seed(0)
        cfg = CLIPConfig(text_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                          num_attention_heads=2, vocab_size=1000, max_position_embeddings=16,
                                          bos_token_id=0, eos_token_id=2, pad_token_id=1),
                         vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                            num_attention_heads=2, image_size=size, patch_size=8),
                         projection_dim=8)
        self.clip, self.vae, self.size = CLIPModel(cfg).eval().requires_grad_(False), vae, size

    def prepare(self, cond: GuidanceCond) -> GuidanceCond:
        ids = torch.tensor([[1 + (hash(w) % 900) for w in p.split()][:8] + [0] * (8 - len(p.split()[:8]))
                            for p in cond.prompts])  # (B, 8) a stand-in tokenizer: the model is random anyway
        cond.extra["text"] = F.normalize(_features(self.clip.get_text_features(input_ids=ids)), dim=-1)  # (B, P)
        return cond

    def score(self, x, t, cond):
        image = self.vae.decode(x / self.vae.config.scaling_factor).sample  # (B, 3, H, W) in ~[-1, 1]
        image = F.interpolate(image, size=(self.size, self.size), mode="bilinear")
        emb = F.normalize(_features(self.clip.get_image_features(pixel_values=image)), dim=-1)  # (B, P)
        return (emb * cond.extra["text"]).sum(-1)  # (B,)


def _features(out):
    """transformers >= 5 returns a model output whose pooler_output holds the projected features."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def test_a_third_objective_plugs_into_the_same_sampler(guided, tiny_sd):
    objective = CLIPSimilarity(tiny_sd.vae)
    assert isinstance(objective, GuidanceObjective)
    cond = objective.prepare(_cond())
    corrector = SelfCorrector(objective, SelfCorrectionConfig(eta=0.5, window=(0.0, 1.0), normalize_grad=True))
    z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = corrector.score(z, torch.tensor(500), cond)
        after = corrector.score(corrector.correct(z, torch.tensor(500), cond, 0), torch.tensor(500), cond)
    assert torch.all(after > before)
    kw = dict(seeds=[0, 1], num_inference_steps=3, progress=False)
    plain = guided(PROMPTS, **kw)
    steered = guided(PROMPTS, correction=SelfCorrectionConfig(eta=0.5, window=(0.0, 1.0), normalize_grad=True),
                     objective=objective, **kw)
    assert np.isfinite(steered).all() and not np.array_equal(plain, steered)
    assert len(guided.last_trace) == 3


def test_not_an_objective_and_missing_objective_fail_clearly(guided):
    with pytest.raises(TypeError, match="GuidanceObjective"):
        SelfCorrector(object(), SelfCorrectionConfig())
    with pytest.raises(ValueError, match="objective"):
        guided(PROMPTS, seeds=[0, 1], num_inference_steps=2, correction=SelfCorrectionConfig(), progress=False)
