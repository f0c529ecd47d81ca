"""DiffusionITM scorer (denoising error, shared noise, unconditional subtraction) and HN-DiffusionITM training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dptune.backbone import TextEmbeddings
from dptune.methods import parse_method
from dptune.methods.diffusion_itm import DiffusionITMScorer, HNObjective, hn_loss


class PlantedBackbone:
    """A fake model whose denoising error is planted: ||eps_hat - eps|| = ERR[image, text] at every t.

    Image k is the constant latent k; text code c is hidden[:, 0, 0] (0 = the empty prompt)."""

    num_train_timesteps, device, dtype = 1000, torch.device("cpu"), torch.float32

    def __init__(self, err: dict) -> None:
        self.err, self.noise_fn, self.calls = err, None, []
        self.abar = torch.linspace(0.99, 0.01, 1000)

    def _coef(self, t):
        a = self.abar[t].view(-1, 1, 1, 1)
        return a.sqrt(), (1 - a).sqrt()

    def add_noise(self, z0, eps, t):
        s0, s1 = self._coef(t)
        return s0 * z0 + s1 * eps

    def denoise_target(self, z0, eps, t):
        return eps

    def encode_text(self, prompts):
        return TextEmbeddings(hidden=torch.zeros(len(prompts), 3, 4), pooled=torch.zeros(len(prompts), 4))

    def predict_noise(self, z_t, t, hidden):
        eps = self.noise_fn(tuple(z_t.shape[1:]), int(t[0]))[None]  # the scorer's shared noise at t
        s0, s1 = self._coef(t)
        images = ((z_t - s1 * eps) / s0).mean(dim=(1, 2, 3)).round().long()  # (P,) which image
        codes = hidden[:, 0, 0].round().long()  # (P,) which text
        self.calls.append(len(z_t))
        err = torch.tensor([self.err[(int(i), int(c))] for i, c in zip(images, codes, strict=True)])
        return eps + err.view(-1, 1, 1, 1) / np.sqrt(eps[0].numel())  # (P, C, h, w): ||pred - eps|| = err


def _planted(err: dict, pairs: list[tuple[int, int]], subtract: bool = True):
    bb = PlantedBackbone(err)
    scorer = DiffusionITMScorer(bb, timesteps=(10, 500, 910), subtract_uncond=subtract)
    bb.noise_fn = scorer.noise
    z0 = torch.stack([torch.full((4, 2, 2), float(i)) for i, _ in pairs])  # (P, 4, 2, 2)
    hidden = torch.zeros(len(pairs), 3, 4)
    hidden[:, 0, 0] = torch.tensor([float(c) for _, c in pairs])
    return scorer.scores(z0, torch.zeros(len(pairs)), TextEmbeddings(hidden, torch.zeros(len(pairs), 4))), bb


def test_scorer_prefers_the_true_caption_over_a_hard_negative():
    """Catches a sign error (lower error must score higher) and a wrong unconditional subtraction: the score
    is exactly -(err(image, text) - err(image, empty))."""
    err = {(1, 1): 2.0, (1, 2): 3.5, (1, 0): 4.0}  # caption 1 is true, caption 2 its hard negative
    scores, _ = _planted(err, [(1, 1), (1, 2)])
    torch.testing.assert_close(scores, torch.tensor([2.0, 0.5]))
    assert scores[0] > scores[1]


def test_image_retrieval_subtracts_the_unconditional_distance_once_per_image():
    """Catches image retrieval without the unconditional term: image 2 is easy to denoise whatever the text
    (low error everywhere), so raw errors pick it; relative to its unconditional error the true image 1 wins.
    The unconditional pass runs once per distinct image, not once per pair."""
    err = {(1, 5): 3.0, (1, 0): 6.0, (2, 5): 2.5, (2, 0): 2.6}
    relative, bb = _planted(err, [(1, 5), (2, 5)])
    raw, _ = _planted(err, [(1, 5), (2, 5)], subtract=False)
    assert raw.argmax().item() == 1 and relative.argmax().item() == 0
    shared, bb = _planted(err | {(1, 6): 1.0}, [(1, 5), (1, 6), (1, 5)])
    assert bb.calls == [3, 3, 3, 1, 1, 1]  # 3 timesteps x 3 pairs, then 3 x 1 distinct image


def test_noise_is_shared_across_candidates_and_fixed_per_t():
    scorer = DiffusionITMScorer(PlantedBackbone({}), timesteps=(10, 110))
    a, b = scorer.noise((4, 2, 2), 10), scorer.noise((4, 2, 2), 10)
    assert torch.equal(a, b) and not torch.equal(a, scorer.noise((4, 2, 2), 110))
    with pytest.raises(ValueError, match="timesteps"):
        DiffusionITMScorer(PlantedBackbone({}), timesteps=(1000,))
    with pytest.raises(TypeError, match="REC"):
        scorer(None, None, None)


def test_fits_evaluate_itm_and_sees_clean_latents(tiny_backbone):
    """The evaluation's single-t noising is bypassed (the scorer noises at its own grid): the result does not
    depend on the evaluation's t."""
    from dptune.data.eval_items import ITMItem
    from dptune.evaluation.discriminative import evaluate_itm

    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 16, 16, generator=g) * 2 - 1 for _ in range(3)]
    items = [ITMItem("i2t", [images[0]], ["a red circle", "a blue square", "two green triangles"], 0, {}),
             ITMItem("t2i", images, ["a red circle"], 1, {})]
    scorer = DiffusionITMScorer(tiny_backbone, timesteps=(10, 510))
    early, late = evaluate_itm(scorer, items, t=10), evaluate_itm(scorer, items, t=900)
    assert early["scores"] == late["scores"] and early["n_i2t"] == early["n_t2i"] == 1


def test_hn_loss_equation_and_clamp():
    """Catches a clamp that lets the negative term grow past the positive one, or a bound that is not
    detached (then the clamped loss would have no gradient on the positive MSE)."""
    pos, neg = torch.tensor(1.0, requires_grad=True), torch.tensor(0.4, requires_grad=True)
    loss = hn_loss(pos, neg)
    loss.backward()
    assert loss.item() == pytest.approx(0.6) and pos.grad.item() == 1.0 and neg.grad.item() == -1.0
    pos, neg = torch.tensor(1.0, requires_grad=True), torch.tensor(3.0, requires_grad=True)
    loss = hn_loss(pos, neg)
    loss.backward()
    assert loss.item() == 0.0 and pos.grad.item() == 1.0 and neg.grad.item() == 0.0
    assert hn_loss(torch.tensor(1.0), torch.tensor(3.0), factor=2.0).item() == pytest.approx(-1.0)


def test_a_few_lora_steps_lower_the_hn_loss_on_a_fixed_batch(tiny_parts):
    from dptune.training.lora import add_lora

    unet = tiny_parts["unet"]
    add_lora(unet, rank=4)
    objective = HNObjective(unet)
    g = torch.Generator().manual_seed(0)
    inputs = {"z_t": torch.randn(4, 4, 8, 8, generator=g), "t": torch.tensor([50, 300, 600, 900]),
              "hidden_pos": torch.randn(4, 6, 32, generator=g), "hidden_neg": torch.randn(4, 6, 32, generator=g)}
    with torch.no_grad():  # planted: the hard negative explains the noise better than the caption (loss > 0)
        inputs["target"] = unet(inputs["z_t"], inputs["t"], encoder_hidden_states=inputs["hidden_neg"]).sample
    params = [p for p in unet.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=3e-3)
    first, _ = objective(inputs)
    assert first.item() > 0
    for _ in range(10):
        loss, terms = objective(inputs)
        opt.zero_grad()
        loss.backward()
        opt.step()
    last, terms = objective(inputs)
    assert last.item() < first.item() - 1e-3
    assert set(terms) == {"pos", "neg", "total"}


def test_train_export_and_generate_on_shapesworld(tmp_path):
    """End to end on the shipped model: two HN steps on the shared trainer export a diffusers-format LoRA that
    the registered method loads; its probe is the DiffusionITM scorer; a missing LoRA names the command."""
    from safetensors import safe_open

    from dptune.methods import GenerationContext, get_method
    from dptune.methods.cost import method_cost
    from dptune.methods.diffusion_itm.training import HNTrainConfig

    method = get_method("hn-diffusion-itm")
    cfg = HNTrainConfig(out_dir=str(tmp_path / "hn"), steps=2, batch_size=2, data_size=8, log_every=1)
    result = method.train(cfg, progress=False)
    lora = tmp_path / "hn" / "final" / "lora"
    with safe_open(str(lora / "pytorch_lora_weights.safetensors"), framework="pt") as f:
        keys = list(f.keys())
    assert keys and all(k.startswith("unet.") and ".lora" in k for k in keys)
    assert result.step == 2
    run = parse_method("hn-diffusion-itm", {"lora": str(lora)})
    gen = run.method.generator(run.config, GenerationContext("shapesworld", steps=2))
    assert gen(["a red circle"], [0]).shape == (1, 32, 32, 3)
    assert isinstance(gen.probe, DiffusionITMScorer)
    assert method_cost(run.method, run.config)["trainable_params"] > 0
    with pytest.raises(ValueError, match="dptune train hn-diffusion-itm"):
        parse_method("hn-diffusion-itm").check_weights()


def test_zero_shot_scorer_on_the_shipped_model_tells_a_red_circle_from_a_blue_square():
    from dptune.methods import GenerationContext
    from dptune.shapesworld.dataset import ShapesWorldDataset

    bb = GenerationContext("shapesworld").backbone()
    sample = ShapesWorldDataset("id", size=1, seed=0)[0]  # category colour: one object
    latents = bb.encode_images(sample.image[None]).float()  # (1, 4, 8, 8)
    text = bb.encode_text([sample.caption, sample.hn_caption])
    scores = DiffusionITMScorer(bb).scores(latents.expand(2, -1, -1, -1), None, text)
    assert scores[0] > scores[1], (sample.caption, sample.hn_caption, scores)
