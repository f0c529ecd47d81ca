"""DCT on the shared trainer: every other weight bit-identical after training, the paper's early stop, the
ShapesWorld end-to-end run (train -> token -> generator -> judge), and one step on the real-size SD 1.5 U-Net."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from dptune.methods.dct.config import DCTTrainConfig
from dptune.methods.dct.token import load_token
from dptune.methods.dct.train import build_objective, build_task, fit, stop_reason
from dptune.utils.io import load_json
from helpers import TinyViT


def states(*modules: nn.Module) -> list[dict]:
    return [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in modules]


def tiny_run(tmp_path, backbone, classifier, **kw):
    cfg = DCTTrainConfig(out_dir=str(tmp_path / "run"), model="tiny-random", classifier="tiny", target="1",
                         steps=kw.pop("steps", 2), batch_size=2, grad_accum=2, sample_steps=3, log_every=1,
                         lr=kw.pop("lr", 0.05), **kw)
    obj = build_objective(backbone, classifier, cfg, target=1, steps=3, guidance=4.0)
    return cfg, build_task(cfg, obj, ["<dct> two red circles", "<dct> a blue square"], {"label": "square"})


def test_training_changes_only_the_token(tiny_backbone, tmp_path):
    """Catches any update outside the token row (weight decay on the table, a network left trainable, BatchNorm or
    dropout state): after two optimiser steps U-Net, VAE, text encoder and classifier are bit-identical."""
    clf = TinyViT()
    nets = (tiny_backbone.unet, tiny_backbone.vae, tiny_backbone.text_encoder, clf)
    before = states(*nets)
    cfg, task = tiny_run(tmp_path, tiny_backbone, clf)
    row0 = task.objective.token.row.detach().clone()
    result = fit(cfg, task, progress=False)
    assert result.step == 2 and len(result.validation) == 2
    tiny_backbone.text_encoder.set_input_embeddings(task.objective.token.base)  # the original table back
    for old, new in zip(before, states(*nets), strict=True):
        assert old.keys() == new.keys()
        assert all(torch.equal(old[k], new[k]) for k in old)
    token, row, meta = load_token(tmp_path / "run" / "final" / "tokens")
    assert token == "<dct>" and meta["label"] == "square"
    assert not torch.equal(row, row0[0]) and torch.equal(row, task.objective.token.row.detach()[0])
    assert (tmp_path / "run" / "best" / "tokens" / "learned_embeds.safetensors").is_file()


class Always(nn.Module):
    """A classifier that always answers ``label`` (accuracy 1 -> the paper's accuracy stop fires)."""

    def __init__(self, label: int, n: int = 3) -> None:
        super().__init__()
        self.label, self.n, self.labels = label, n, [str(i) for i in range(n)]
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(images.shape[0], self.n) + images.mean() * 0
        logits[:, self.label] = 5.0
        return logits * self.scale


def test_stop_rule():
    """Paper: stop when an epoch's accuracy exceeds 0.7 or after 15 epochs without a better one."""
    acc = lambda xs: [{"accuracy": x} for x in xs]  # noqa: E731
    assert stop_reason(acc([0.2, 0.8]), 15, 0.7).startswith("accuracy")
    assert stop_reason(acc([0.5] + [0.4] * 14), 15, 0.7) is None
    assert "15 epochs" in stop_reason(acc([0.5] + [0.4] * 15), 15, 0.7)
    assert stop_reason(acc([0.5] * 16), 15, 0.7) is not None  # equal is not better
    assert stop_reason([], 15, 0.7) is None


def test_trainer_stops_early_and_keeps_its_token(tiny_backbone, tmp_path):
    """With a classifier that always agrees, the first epoch's accuracy 1.0 > 0.7 stops a 5-step run after one
    step, and the stopped run still writes its checkpoint and final token."""
    cfg, task = tiny_run(tmp_path, tiny_backbone, Always(1), steps=5)
    result = fit(cfg, task, progress=False)
    assert result.stopped_early and result.step == 1 and result.validation[-1]["stop"].startswith("accuracy 1.00")
    assert (tmp_path / "run" / "final" / "tokens" / "learned_embeds.safetensors").is_file()
    assert (tmp_path / "run" / "latest.json").is_file()


def test_config_errors():
    with pytest.raises(ValueError, match="classifier"):
        DCTTrainConfig(target="3")
    with pytest.raises(ValueError, match="target"):
        DCTTrainConfig(classifier="shapesworld-count")
    with pytest.raises(ValueError, match="no \\{token\\}"):
        DCTTrainConfig(classifier="shapesworld-count", target="3", template="a photo of {class}")


def test_shapesworld_end_to_end(tmp_path, monkeypatch):
    """The demo hook (quick) trains a count-3 token through `dct`'s registered train function on the shipped
    model with the shipped counter, measures base vs dct with the judge on evaluation seeds, and returns a `dct`
    row whose generator puts the token into count-3 prompts only and restores the shared text encoder."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from dptune.methods import DemoSetup, GenerationContext, get_method

    method = get_method("dct")
    assert method.train_config is DCTTrainConfig and method.demo is not None
    (run,) = method.demo(DemoSetup(out_dir=tmp_path, model="shapesworld", quick=True, progress=False))
    assert run.method.name == "dct"
    run.check_weights()
    token, row, meta = load_token(run.config.tokens)
    assert meta["label"] == "3" and meta["class_words"] == "three" and meta["initializer"] == "three"
    assert meta["placement"] == "replace"  # the token stands in for "three" (docs/dct.md: why)
    assert "<dct> red circles" in meta["prompts"] and "<dct> yellow triangles" not in meta["prompts"]  # ID kinds
    report = load_json(tmp_path / "dct" / "target_accuracy.json")
    steps = report["train"]["steps"]  # 2, or 1 if the first epoch already met the accuracy stop
    assert steps in (1, 2) and len(report["train"]["history"]) == steps
    assert report["train"]["stopped_early"] == (steps == 1)
    for name in ("base", "dct"):
        r = report[name]
        assert r["n"] == 12 and r["id"]["n"] == 10 and r["ood"]["n"] == 2 and r["first_seed"] >= 50_000
        assert 0 <= r["ci95"][0] <= r["accuracy"] <= r["ci95"][1] <= 1
    ctx = GenerationContext("shapesworld", steps=3)
    gen = method.generator(run.config, ctx)
    assert gen.prompts(["three red circles", "two red circles"]) == ["<dct> red circles", "two red circles"]
    table = ctx.backbone().text_encoder.get_input_embeddings()
    images = gen(["three red circles"], [50_000])
    assert images.shape == (1, 32, 32, 3) and ctx.backbone().text_encoder.get_input_embeddings() is table


@pytest.mark.slow
@pytest.mark.timeout(3600)  # building the 860M-parameter U-Net alone takes minutes on a busy 2-core CPU
def test_one_step_on_real_size_sd15_with_efficientnet(sd15_unet, tiny_parts, tmp_path):
    """One DCT optimiser step on the real-size SD 1.5 architecture (U-Net, VAE and text encoder from the published
    configs, random weights; 64 px images = 8x8 latents; the tiny word-level tokenizer) with the real
    EfficientNet-Lite0: the gradient reaches the token through all of them and only the token moves."""
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel

    from dptune.backbone import SDBackbone
    from dptune.backbone.tiny import real_size_config
    from dptune.methods.dct.classifiers import load_classifier

    parts = copy.deepcopy(tiny_parts)
    tok = parts["tokenizer"]
    torch.manual_seed(0)
    te_config = {k: v for k, v in real_size_config("sd-v1-5", "text_encoder").items() if not k.startswith("_")}
    parts["text_encoder"] = CLIPTextModel(CLIPTextConfig(**{**te_config, "bos_token_id": tok.bos_token_id,
                                                            "eos_token_id": tok.eos_token_id,
                                                            "pad_token_id": tok.pad_token_id})).eval()
    parts["vae"] = AutoencoderKL.from_config(real_size_config("sd-v1-5", "vae")).eval()
    parts["unet"] = sd15_unet
    bb = SDBackbone(**parts)
    assert bb.text_encoder.config.hidden_size == 768 and bb.vae_scale_factor == 8
    clf = load_classifier("efficientnet-lite0")
    cfg = SimpleNamespace(token="<dct>", initializer="a", grad_steps=1, decode="x0")
    obj = build_objective(bb, clf, cfg, target=967, steps=1, guidance=7.0)  # one differentiable DDIM step
    cfg = DCTTrainConfig(out_dir=str(tmp_path / "run"), classifier="efficientnet-lite0", target="espresso", steps=1,
                         grad_accum=1, batch_size=1, size=64)
    task = build_task(cfg, obj, ["<dct> a red circle"], {"label": "espresso"})
    row0 = obj.token.row.detach().clone()
    result = fit(cfg, task, progress=False)
    assert result.step == 1 and not torch.equal(row0, obj.token.row.detach())


def test_class_prompts():
    """Paper form 'a photo of <tok> {class}' for ImageNet-style labels; ShapesWorld count captions of the training
    kinds with the token in place of the count word; a template without {token} is refused."""
    from dptune.methods.dct.config import class_prompts

    assert class_prompts("efficientnet-lite0", "sd15", "tabby, tabby cat", "<t>", None, None) == (
        ["a photo of <t> tabby"], "tabby")
    assert class_prompts("x", "sd15", "tabby, tabby cat", "<t>", None, None, "replace")[0] == ["a photo of <t>"]
    prompts, words = class_prompts("shapesworld-count", "shapesworld", "3", "<t>", None, None, "replace")
    assert words == "three" and len(prompts) == 10 and "<t> red circles" in prompts
    prompts, _ = class_prompts("shapesworld-count", "shapesworld", "2", "<t>", None, None)
    assert "<t> two green squares" in prompts
    with pytest.raises(ValueError, match="no \\{token\\}"):
        class_prompts("x", "sd15", "cat", "<t>", "a photo of {class}", None)


@pytest.mark.parametrize(("argv", "needle"), [
    (["--target", "3"], "name a classifier"),
    (["--classifier", "shapesworld-count"], "name the target class"),
    (["--classifier", "shapesworld-count", "--target", "7"], "neither a label nor an index"),
    (["--classifier", "shapesworld-count", "--target", "seven"], "has no label 'seven'"),
    (["--classifier", "shapesworld-count", "--target", "3", "--template", "{class}"], "has no {token}"),
])
def test_cli_errors(argv, needle, tmp_path, capsys, monkeypatch):
    """`dptune train dct` with a bad option: exit code 2 and one error line naming the problem (before any model
    is loaded)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from dptune.cli.main import main

    code = main(["train", "dct", "--out-dir", str(tmp_path / "run"), *argv])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and needle in lines[0], lines
