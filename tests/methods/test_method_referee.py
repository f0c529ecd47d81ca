"""The ``referee`` method: augmentations, the inversion loop, SDS, errors, the registered method end to end."""

from __future__ import annotations

import pytest
import torch

from dptune.methods.referee.augment import ViewConfig, augmented_views, build_views
from dptune.methods.referee.inversion import InversionConfig, Inverter, learning_rate
from dptune.methods.referee.referees import Referee

PROMPT = "two red circles"


class _PixelTarget(Referee):
    """A referee whose logit is minus the distance to a fixed target image: the loss it gives is known."""

    name = "target"

    def __init__(self, target: torch.Tensor) -> None:
        self.target = target

    def _score(self, images, texts):
        return -(images - self.target).pow(2).flatten(1).mean(1) * 100  # (B,)


def test_views_are_random_and_differentiable():
    """kornia views: N different draws per image, and the gradient reaches the image (catches a non-differentiable
    augmentation or a detach in the pipeline)."""
    images = torch.rand(2, 3, 32, 32, requires_grad=True)
    torch.manual_seed(0)
    views = augmented_views(images, build_views(ViewConfig()), 6)  # (2, 6, 3, 32, 32)
    assert views.shape == (2, 6, 3, 32, 32)
    assert (views[0, 0] - views[0, 1]).abs().sum() > 0
    views.pow(2).sum().backward()
    assert images.grad is not None and torch.isfinite(images.grad).all() and images.grad.abs().sum() > 0


def test_config_validates_and_lr_schedule_is_the_papers():
    cfg = InversionConfig()
    assert cfg.referee_iters == 150 and cfg.views == 10 and cfg.sds_guidance == 30
    assert learning_rate(cfg, 0) == pytest.approx(0.1) and learning_rate(cfg, 9) == pytest.approx(1.0)
    assert learning_rate(cfg, 160) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="keep <= views"):
        InversionConfig(views=2, keep=3)
    with pytest.raises(ValueError, match="referee_iters"):
        InversionConfig(iterations=4, referee_iters=5)


def _quiet(**kw) -> InversionConfig:
    """No randomness besides the initial latent: no augmentation, noise, EMA or SDS."""
    base = dict(views=1, keep=1, degrees=0, translate=0, perspective=0, jitter=0, erase_min=0, erase_max=0,
                pixel_noise=0, latent_noise=0, ema_decay=0, sds_weight=0, sds_weight_final=0, lr_warmup=0)
    return InversionConfig(**{**base, **kw})


def test_referee_loss_falls_on_a_fixed_prompt(tiny_backbone):
    """Optimising the latent lowers the referee's loss on the decoded image (catches a sign error in the update
    or a gradient that never reaches the latent)."""
    tiny_backbone.freeze()
    torch.manual_seed(0)
    target = torch.rand(1, 3, tiny_backbone.image_size, tiny_backbone.image_size)
    ref = _PixelTarget(target)
    inv = Inverter(tiny_backbone, ref, _quiet(iterations=15, lr=1.0, min_lr=1.0, ref_rms=0.2))
    with torch.enable_grad():
        start = float(ref.loss(inv.decode(torch.randn(1, 4, tiny_backbone.latent_size, tiny_backbone.latent_size,
                                                      generator=torch.Generator().manual_seed(3))), [PROMPT]))
        images, curve = inv([PROMPT], [3])
    end = float(ref.loss(images, [PROMPT]))
    assert len(curve) == 15 - 15 // 16
    assert end < start - 0.05 * abs(start)


def test_sds_gradient_and_nan_latent_error(tiny_backbone, monkeypatch):
    """SDS gives a finite (B, 4, h, w) gradient; a NaN latent stops the loop with one clear error."""
    from dptune.methods.referee import inversion
    from dptune.methods.referee.sds import SDSTerm

    tiny_backbone.freeze()
    side = tiny_backbone.latent_size
    sds = SDSTerm(tiny_backbone, [PROMPT, "a blue square"])
    g = sds.grad(torch.randn(2, 4, side, side), torch.Generator().manual_seed(0))
    assert g.shape == (2, 4, side, side) and torch.isfinite(g).all() and g.abs().sum() > 0
    ref = _PixelTarget(torch.zeros(1, 3, 1, 1))
    monkeypatch.setattr(inversion.SDSTerm, "grad", lambda self, z, gen: torch.full_like(z, float("nan")))
    inv = Inverter(tiny_backbone, ref, _quiet(iterations=3, sds_weight=800, sds_weight_final=400))
    with pytest.raises(FloatingPointError, match="NaN/inf at iteration 0"):
        inv([PROMPT], [0])


def test_method_runs_with_dpt_adapter_referee_and_sds_on_tiny_sd():
    """``referee:referee=dpt:random`` on the tiny random SD, with SDS: images of the model's size in [0, 1]."""
    from dptune.methods import GenerationContext, parse_method

    run = parse_method("referee:referee=dpt:random,iterations=3,views=2,ema_start=1,ema_every=1,sds_prefix=")
    gen = run.method.generator(run.config, GenerationContext("tiny-random"))
    images = gen([PROMPT, "a blue square"], [0, 1])
    assert images.shape[0] == 2 and images.shape[-1] == 3 and 0 <= images.min() and images.max() <= 1
    assert "SDS 800->400" in gen.description and len(gen.last_curve) == 3


def test_shapesworld_end_to_end_with_shipped_referee():
    """The default referee is the shipped one: the method runs offline on the shipped ShapesWorld SD."""
    from dptune.methods import GenerationContext, parse_method

    run = parse_method("referee:iterations=2,views=2,sds_weight=0,sds_weight_final=0")
    gen = run.method.generator(run.config, GenerationContext("shapesworld"))
    images = gen(["two red circles", "a blue square left of a green triangle"], [0, 1])
    assert images.shape == (2, 32, 32, 3)
    assert "no SDS" in gen.description and gen.referee.name == "shapesworld"


def test_demo_hook_returns_rows_with_and_without_sds(tmp_path):
    from dptune.methods import DemoSetup, get_method

    runs = get_method("referee").demo(DemoSetup(out_dir=tmp_path, model="shapesworld", quick=True))
    assert [r.label for r in runs] == ["referee + SDS", "referee (no SDS)"]
    assert runs[0].config.uses_sds and not runs[1].config.uses_sds


def test_option_errors_name_the_problem():
    from dptune.methods import parse_method

    with pytest.raises(ValueError, match="keep <= views"):
        parse_method("referee:views=1,keep=2")
    with pytest.raises(ValueError, match="weight after"):
        from dptune.methods.referee.referees import parse_spec

        parse_spec("shapesworld-referee*x")


def test_referee_training_exports_safetensors_and_json(tmp_path):
    """``dptune train referee`` on the shared trainer: the exported folder is config.json + model.safetensors
    (+ held_out.json), loads as a referee by folder detection, and its logits are log-odds (sigmoid loss)."""
    from dptune.methods.referee.referees import load_referee
    from dptune.methods.referee.shapes_train import RefereeTrainConfig, train_referee

    cfg = RefereeTrainConfig(out_dir=str(tmp_path / "run"), steps=3, batch_size=8, data_size=32, val_size=8,
                             validate_every=3, log_every=1, warmup_steps=0)
    train_referee(cfg, progress=False)
    final = tmp_path / "run" / "final" / "referee"
    assert sorted(p.name for p in final.iterdir()) == ["config.json", "held_out.json", "model.safetensors"]
    ref = load_referee(str(final))
    assert ref.name == "shapesworld" and ref.log_odds
    images = torch.rand(2, 3, 32, 32)
    assert ref.score(images, ["two red circles", "a blue square"]).shape == (2,)
    with pytest.raises(ValueError, match="only reads ShapesWorld captions"):
        ref.score(images[:1], ["a photo of a zebra"])


def test_init_sample_starts_from_the_base_sample():
    """``init=sample`` (extension) with zero steps returns the base model's sample re-decoded, not noise."""
    from dptune.methods import GenerationContext, parse_method

    ctx = GenerationContext("shapesworld")
    run = parse_method("referee:init=sample,iterations=1,referee_iters=0,sds_weight=0,sds_weight_final=0,"
                       "latent_noise=0,ema_decay=0")
    images = run.method.generator(run.config, ctx)(["two red circles"], [0])
    base = parse_method("base")
    reference = base.method.generator(base.config, ctx)(["two red circles"], [0])
    assert abs(images - reference).mean() < 0.1  # VAE round trip of the same sample
    with pytest.raises(ValueError, match="init must be"):
        parse_method("referee:init=zeros")
