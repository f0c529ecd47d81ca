"""Stage-2 LoRA: the exported folder loads into plain diffusers pipelines as the trained model; LoRA targets."""

from __future__ import annotations

import pytest
import torch

from dptune.training import train
from dptune.utils.io import ArtefactError, load_tensors
from helpers import final_weights, lora_tensors, unet_output
from helpers import tiny_train_config as _cfg


def test_stage2_lora_loads_into_plain_pipeline(tmp_path, tiny_pipeline_dir):
    """The exported ``lora/`` folder, loaded by a plain diffusers pipeline, IS the trained model: the same
    LoRA modules (none missing or extra, no diffusers warning), the same values, and the same U-Net output
    on a fixed input (so the alpha/scale survives too). Deliberate breaks seen failing: one LoRA module
    dropped from the exported dict (module sets differ), and ``lora_alpha = 2 * rank`` in ``add_lora``
    (training scale 2, plain load scale 1: outputs differ)."""
    import logging

    from diffusers import StableDiffusionPipeline

    from dptune.backbone.loading import load_pipeline
    from dptune.training.lora import add_lora

    cfg = _cfg(tmp_path, tiny_pipeline_dir, stage="tune", steps=3, lr=5e-2, mse_weight=1.0, validate_every=3,
               gen_val_prompts=1, gen_val_steps=2)
    result = train(cfg, progress=False)
    # stage 2 selects by generation alignment (judge over the ID validation prompts)
    assert 0.0 <= result.best["gen_overall"] <= 1.0 and result.best["select"] == result.best["gen_overall"]

    # the trained model: the tiny U-Net with training's LoRA layout and the checkpoint's trained values
    trained = load_pipeline(tiny_pipeline_dir).unet
    add_lora(trained, cfg.lora_rank, cfg.lora_targets)
    params = dict(trained.named_parameters())
    weights = {k.split("unet.", 1)[1]: v for k, v in final_weights(result).items() if ".lora_" in k}
    assert weights.keys() == {n for n in params if ".lora_" in n}
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
    assert any(v.abs().max() > 0 for k, v in weights.items() if "lora_B" in k)  # B starts at 0: it trained

    pipe = StableDiffusionPipeline.from_pretrained(tiny_pipeline_dir, safety_checker=None, feature_extractor=None,
                                                   requires_safety_checker=False)
    before = unet_output(pipe.unet)
    warned: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warned.append(record.getMessage())
    logging.getLogger("diffusers").addHandler(handler)  # diffusers only warns about unmatched keys
    try:
        pipe.load_lora_weights(str(tmp_path / "run" / "final" / "lora"))
    finally:
        logging.getLogger("diffusers").removeHandler(handler)
    assert [w for w in warned if not w.startswith("No LoRA keys associated to CLIPTextModel")] == []  # U-Net only
    loaded, want = lora_tensors(pipe.unet), lora_tensors(trained)
    assert loaded.keys() == want.keys()  # no LoRA module missing or unexpected
    for name, value in want.items():
        assert torch.equal(loaded[name], value), name
    assert not any(".lora_" in n for n, _ in pipe.text_encoder.named_parameters())
    after = unet_output(pipe.unet)
    assert (after - before).abs().max() > 1e-3  # the LoRA does something ...
    torch.testing.assert_close(after, unet_output(trained), rtol=1e-4, atol=1e-5)  # ... exactly what training did


def test_text_encoder_lora_trains_saves_and_loads(tmp_path, tiny_pipeline_dir):
    from diffusers import StableDiffusionPipeline

    from dptune.backbone import SDBackbone
    from dptune.backbone.lora_loading import load_lora_into

    cfg = _cfg(tmp_path, tiny_pipeline_dir, stage="tune", steps=3, lr=5e-2, mse_weight=1.0, lora_text_encoder=True)
    train(cfg, progress=False)
    saved = load_tensors(tmp_path / "run" / "checkpoints" / "step-0000003" / "trainable.safetensors")
    te = [k for k in saved if k.startswith("text_encoder.") and "lora_B" in k]
    assert te and any(saved[k].abs().max() > 0 for k in te)  # B starts at 0: non-zero means it trained
    exported = load_tensors(tmp_path / "run" / "final" / "lora" / "pytorch_lora_weights.safetensors")
    assert any(k.startswith("text_encoder.") for k in exported) and any(k.startswith("unet.") for k in exported)
    pipe = StableDiffusionPipeline.from_pretrained(tiny_pipeline_dir, safety_checker=None, feature_extractor=None,
                                                   requires_safety_checker=False)
    before = SDBackbone.from_pipeline(pipe).encode_text(["a red circle"]).pooled
    load_lora_into(pipe, tmp_path / "run" / "final" / "lora")
    after = SDBackbone.from_pipeline(pipe).encode_text(["a red circle"]).pooled
    assert (after - before).abs().max() > 1e-4  # the plain pipeline now carries the text-encoder LoRA
    assert any("lora_" in n for n, _ in pipe.unet.named_parameters())
    loaded = sorted(round(p.norm().item(), 5) for n, p in pipe.text_encoder.named_parameters() if "lora_B" in n)
    assert loaded == sorted(round(v.norm().item(), 5) for k, v in exported.items()
                            if k.startswith("text_encoder.") and ".up." in k)  # the trained values, all of them
    resumed = train(_cfg(tmp_path, tiny_pipeline_dir, stage="tune", steps=4, lr=5e-2, mse_weight=1.0,
                         lora_text_encoder=True), progress=False)
    assert resumed.step == 4
    with pytest.raises(ArtefactError, match="lora_text_encoder"):
        train(_cfg(tmp_path, tiny_pipeline_dir, stage="tune", steps=5, lr=5e-2, mse_weight=1.0), progress=False)


def test_cross_attention_only_lora_targets(tmp_path, tiny_pipeline_dir):
    from dptune.backbone import load_backbone
    from dptune.training.lora import add_lora

    unet = load_backbone(tiny_pipeline_dir).unet
    add_lora(unet, rank=2, targets="cross")
    names = [n for n, _ in unet.named_parameters()]
    lora = [n for n in names if "lora_" in n]
    assert lora and all(".attn2." in n for n in lora)


def test_text_encoder_lora_can_cover_the_feed_forward_layers(tiny_pipeline_dir):
    from dptune.backbone.loading import load_pipeline
    from dptune.training.lora import add_text_encoder_lora

    attn_only = load_pipeline(tiny_pipeline_dir).text_encoder
    with_mlp = load_pipeline(tiny_pipeline_dir).text_encoder
    n_attn = add_text_encoder_lora(attn_only, rank=2)
    n_mlp = add_text_encoder_lora(with_mlp, rank=2, mlp=True)
    assert n_mlp > n_attn
    assert any("fc1.lora_A" in name for name, _ in with_mlp.named_parameters())
    assert not any("fc1.lora_" in name for name, _ in attn_only.named_parameters())
