"""SoftREPA / AGSM end to end: token files, their errors, training on the shared trainer (ShapesWorld),
generation through the registry, and one step on the real-size SD 1.5 / 2.1 U-Nets (slow)."""

from __future__ import annotations

import pytest
import torch

from dptune.methods import DemoSetup, GenerationContext, get_method, parse_method
from dptune.methods.soft_tokens.inject import architecture_of, context_dims
from dptune.methods.soft_tokens.tokens import SoftTokens, load_tokens, save_tokens


def test_token_files_round_trip_with_their_metadata(tmp_path, tiny_parts):
    """safetensors + JSON (architecture, dims, blocks, K, banks, extra); loading gives the same tensors."""
    unet = tiny_parts["unet"]
    tokens = SoftTokens(architecture_of(unet), context_dims(unet, ["down0", "up1"]), num_tokens=3, banks=2)
    with torch.no_grad():
        tokens.time["up1"][1, 7] = 1.5
    save_tokens(tokens, tmp_path / "tokens", {"method": "agsm", "training": {"steps": 5}})
    import json

    meta = json.loads((tmp_path / "tokens" / "tokens.json").read_text())
    assert meta["architecture"] == "UNet2DConditionModel" and meta["blocks"] == ["down0", "up1"]
    assert (meta["num_tokens"], meta["banks"], meta["training"]) == (3, 2, {"steps": 5})
    loaded = load_tokens(tmp_path, unet)  # a parent folder holding tokens/ is found too
    for name, p in tokens.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], p)
    assert loaded.meta_extra["method"] == "agsm"


def test_token_file_errors_are_one_clear_line(tmp_path, tiny_parts):
    """Another architecture (other context widths), a missing file and a K mismatch each name the problem and
    the fix (catches a silent load into a model whose blocks do not match)."""
    from dptune.backbone.tiny import tiny_components

    unet = tiny_parts["unet"]
    save_tokens(SoftTokens(architecture_of(unet), context_dims(unet), num_tokens=2), tmp_path / "t")
    wide = tiny_components(cross_dim=48)["unet"]
    for call, match in [
        (lambda: load_tokens(tmp_path / "t", wide), "were trained for UNet2DConditionModel .*train tokens for this"),
        (lambda: load_tokens(tmp_path / "nothing"), "no soft tokens at .*dptune train softrepa"),
        (lambda: load_tokens(tmp_path / "t", unet, num_tokens=4), "hold K=2 tokens but K=4 .*num_tokens=2"),
    ]:
        with pytest.raises((ValueError, FileNotFoundError), match=match) as info:
            call()
        assert "\n" not in str(info.value)


def test_registered_with_tokens_as_their_weights():
    for name in ("softrepa", "agsm"):
        method = get_method(name)
        assert method.weights == ("tokens",) and method.train_config is not None and method.demo is not None
        with pytest.raises(ValueError, match=f"needs tokens weights .*dptune train {name}"):
            parse_method(name).check_weights()


def test_nan_loss_stops_training(tmp_path):
    """NaN tokens -> NaN loss -> the shared trainer stops with TrainingDiverged naming the step."""
    from dptune.methods.soft_tokens.training import SoftREPATrainConfig, train_tokens
    from dptune.training.loop import TrainingDiverged

    cfg = SoftREPATrainConfig(out_dir=str(tmp_path / "nan"), model="tiny-random", steps=3, batch_size=2,
                              init_std=float("nan"), data_size=8)
    with pytest.raises(TrainingDiverged, match="loss is nan at step 0"):
        train_tokens(cfg, "softrepa", progress=False)


def test_agsm_resume_continues_tokens_and_ema_exactly(tmp_path):
    """2 steps + resume to 4 == 4 steps straight, for both banks AND the EMA teacher (the EMA is checkpointed
    as a gradient-free trainable parameter; a plain buffer would restart from the initial tokens)."""
    from safetensors.torch import load_file

    from dptune.methods.soft_tokens.training import AGSMTrainConfig, train_tokens

    def run(out, steps):
        cfg = AGSMTrainConfig(out_dir=str(out), model="tiny-random", steps=steps, batch_size=2, data_size=16,
                              checkpoint_every=2, ema_decay=0.5, lr=0.05)
        train_tokens(cfg, "agsm", progress=False)

    run(tmp_path / "straight", 4)
    run(tmp_path / "resumed", 2)
    run(tmp_path / "resumed", 4)
    a, b = (load_file(tmp_path / d / "checkpoints" / "step-0000004" / "trainable.safetensors")
            for d in ("straight", "resumed"))
    assert any(k.startswith("ema.") for k in a) and a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_demo_hooks_train_both_on_shapesworld_and_generate(tmp_path):
    """The quick demo hooks train SoftREPA and AGSM tokens on ShapesWorld with the shipped model, export them
    and return runs whose generators change the images and leave the shared U-Net as it was."""
    runs = []
    for name in ("softrepa", "agsm"):
        setup = DemoSetup(out_dir=tmp_path, model="shapesworld", quick=True, progress=False)
        runs += get_method(name).demo(setup)
    assert [r.method.name for r in runs] == ["softrepa", "agsm"]
    assert (tmp_path / "agsm" / "final" / "tokens" / "tokens.safetensors").is_file()
    ctx = GenerationContext("shapesworld", steps=3)
    prompts, seeds = ["two red circles"], [0]
    base = get_method("base").generator(None, ctx)(prompts, seeds)
    for run in runs:
        run.check_weights()
        images = run.method.generator(run.config, ctx)(prompts, seeds)
        assert images.shape == base.shape and not (images == base).all()
    unet = ctx.backbone().unet
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in unet.modules())
    again = get_method("base").generator(None, ctx)(prompts, seeds)
    assert (again == base).all()


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["sd15_unet", "sd21_unet"])
def test_one_training_step_on_real_size_sd(fixture, request):
    """SoftREPA and AGSM on the real SD 1.5 / 2.1-base U-Net (random weights, 32 x 32 latents, B = 2): the
    token gradient is finite and non-zero."""
    from dptune.methods.soft_tokens.inject import denoiser_call
    from dptune.methods.soft_tokens.objective import AGSMObjective, SoftREPAObjective

    unet = request.getfixturevalue(fixture).requires_grad_(False)
    width = unet.config.cross_attention_dim
    gen = torch.Generator().manual_seed(0)
    inputs = {"z_t": torch.randn(2, 4, 32, 32, generator=gen), "t": torch.full((2,), 400),
              "hidden": torch.randn(2, 77, width, generator=gen), "target": torch.randn(2, 4, 32, 32, generator=gen)}
    for cls, banks in ((SoftREPAObjective, 1), (AGSMObjective, 2)):
        tokens = SoftTokens(architecture_of(unet), context_dims(unet), num_tokens=4, banks=banks)
        total, _ = cls(unet, denoiser_call(unet), tokens)(inputs)
        total.backward()
        grad = tokens.base[tokens.blocks[0]].grad
        assert torch.isfinite(total) and grad is not None and grad.abs().sum() > 0


def test_generate_and_eval_cli_take_token_methods(tmp_path, capsys):
    """`dptune generate --method agsm:tokens=P` and `dptune eval --methods base,softrepa:tokens=P,agsm:tokens=Q`
    on the tiny random SD: the images differ from base and eval lists every row."""
    import json

    from dptune.backbone import load_backbone
    from dptune.cli.main import main

    unet = load_backbone("tiny-random").unet
    for name, banks in (("softrepa", 1), ("agsm", 2)):
        tokens = SoftTokens(architecture_of(unet), context_dims(unet), num_tokens=2, banks=banks, init_std=1.0)
        save_tokens(tokens, tmp_path / name / "final" / "tokens", {"method": name})
    common = ["--model", "tiny-random", "--steps", "2", "--no-progress"]
    for method, out in (("base", "gb"), (f"agsm:tokens={tmp_path / 'agsm'}", "ga")):
        assert main(["generate", *common, "--prompt", "two red circles", "--method", method,
                     "--out", str(tmp_path / out)]) == 0
    from PIL import Image

    a, b = (Image.open(tmp_path / d / "00000_s0.png").tobytes() for d in ("gb", "ga"))
    assert a != b
    spec = f"base,softrepa:tokens={tmp_path / 'softrepa'},agsm:tokens={tmp_path / 'agsm'}"
    assert main(["eval", *common, "--methods", spec, "--prompts", "shapesworld-id", "--prompts-per-category", "1",
                 "--images-per-prompt", "1", "--no-discriminative", "--n-boot", "50", "--threads", "1",
                 "--out", str(tmp_path / "ev")]) == 0
    results = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert [m["spec"]["method"] for m in results["methods"]] == ["base", "softrepa", "agsm"]
