"""SelfCorrectionConfig validation, DPTPipeline loading (adapter, LoRA), output types and error messages."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dptune.adapter import DPTProbe, save_adapter
from dptune.backbone import SDBackbone
from dptune.backbone.tiny import tiny_components
from dptune.sampling import DPTPipeline, SelfCorrectionConfig
from dptune.utils.config import from_dict, to_dict
from test_sampling import make_sd, tiny_adapter


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"eta": -0.1}, "eta must be >= 0"),
        ({"eta": float("nan")}, "finite"),
        ({"window": (0.6, 0.2)}, "0 <= start < end <= 1"),
        ({"window": (0.0, 1.5)}, "0 <= start < end <= 1"),
        ({"window": "early"}, "two numbers"),
        ({"mode": "fast"}, "mode must be one of"),
        ({"grad_space": "pixels"}, "grad_space must be one of"),
        ({"grad_every": 0}, "grad_every"),
        ({"normalize_grad": "yes"}, "normalize_grad"),
    ],
)
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SelfCorrectionConfig(**kwargs)


def test_config_window_and_roundtrip():
    cfg = SelfCorrectionConfig()
    assert cfg.eta == 0.5 and cfg.mode == "paper" and cfg.window == (0.0, 0.5)
    assert cfg.active_steps(10) == [0, 1, 2, 3, 4]
    assert SelfCorrectionConfig(window=(0, 1)).active_steps(3) == [0, 1, 2]
    assert SelfCorrectionConfig(window=(0.5, 1)).active_steps(1) == []
    assert SelfCorrectionConfig(eta=0.0, window=(0, 1)).active_steps(5) == []
    back = from_dict(SelfCorrectionConfig, to_dict(SelfCorrectionConfig(window=[0.2, 0.8], grad_every=2)))
    assert back.window == (0.2, 0.8) and back.grad_every == 2


@pytest.fixture
def adapter_dir(tmp_path):
    return save_adapter(tiny_adapter(), tmp_path / "adapter")


def test_from_pretrained_with_adapter_and_output_types(tiny_pipeline_dir, adapter_dir):
    pipe = DPTPipeline.from_pretrained(tiny_pipeline_dir, adapter=adapter_dir, scheduler="euler")
    assert pipe.scheduler_name == "euler" and pipe.probe is not None and not pipe.probe.adapter.training
    cfg = SelfCorrectionConfig(window=(0.0, 1.0), normalize_grad=True, grad_space="model_input")
    kw = dict(seeds=[5], num_inference_steps=3, correction=cfg, progress=False)
    arr = pipe(["a red circle"], output_type="np", **kw)
    pt = pipe(["a red circle"], output_type="pt", **kw)
    pil = pipe(["a red circle"], output_type="pil", **kw)
    assert arr.shape == (1, 16, 16, 3) and 0 <= arr.min() and arr.max() <= 1
    assert tuple(pt.shape) == (1, 3, 16, 16)
    np.testing.assert_allclose(pt.permute(0, 2, 3, 1).numpy(), arr, atol=1e-6)
    assert len(pil) == 1 and pil[0].size == (16, 16)
    plain = pipe(["a red circle"], seeds=[5], num_inference_steps=3, progress=False)
    assert np.abs(plain - arr).max() > 1e-3


def test_from_pretrained_errors(tiny_pipeline_dir, adapter_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="adapter directory .* does not exist"):
        DPTPipeline.from_pretrained(tiny_pipeline_dir, adapter=tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="LoRA directory .* does not exist"):
        DPTPipeline.from_pretrained(tiny_pipeline_dir, lora=tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no .safetensors"):
        DPTPipeline.from_pretrained(tiny_pipeline_dir, lora=tmp_path / "empty")
    with pytest.raises(
        ValueError, match="in_channels"
    ):  # adapter built for mid (32 ch), probing down0 (16 ch)
        DPTPipeline.from_pretrained(tiny_pipeline_dir, adapter=adapter_dir, blocks=["down0"])


def test_call_errors(tiny_parts):
    pipe = DPTPipeline(make_sd(tiny_parts))
    with pytest.raises(ValueError, match="needs a discriminative adapter"):
        pipe(
            ["a red circle"], correction=SelfCorrectionConfig(eta=0.5), num_inference_steps=1, progress=False
        )
    with pytest.raises(ValueError, match="one seed per prompt"):
        pipe(["a red circle"], seeds=[1, 2], num_inference_steps=1, progress=False)
    with pytest.raises(ValueError, match="non-empty"):
        pipe(["  "], num_inference_steps=1, progress=False)
    with pytest.raises(ValueError, match="multiples of 2"):
        pipe(["a red circle"], height=15, num_inference_steps=1, progress=False)
    with pytest.raises(ValueError, match="output_type"):
        pipe(["a red circle"], output_type="jpg", num_inference_steps=1, progress=False)
    other = make_sd(tiny_components(seed=1))
    with pytest.raises(ValueError, match="this pipeline's U-Net"):
        DPTPipeline(pipe.pipe, DPTProbe(SDBackbone.from_pipeline(other), tiny_adapter()))
    # eta = 0 needs no adapter and equals no correction
    a = pipe(
        ["a red circle"], correction=SelfCorrectionConfig(eta=0.0), num_inference_steps=2, progress=False
    )
    b = pipe(["a red circle"], num_inference_steps=2, progress=False)
    assert np.array_equal(a, b)


def test_lora_folder_from_stage2_changes_the_model(tiny_pipeline_dir, tmp_path):
    from dptune.training.lora import add_lora, save_lora

    pipe = DPTPipeline.from_pretrained(tiny_pipeline_dir)
    base = pipe(["a red circle"], seeds=[0], num_inference_steps=2, progress=False)
    unet = pipe.pipe.unet
    add_lora(unet, rank=2)
    torch.manual_seed(0)
    for name, p in unet.named_parameters():
        if "lora_B" in name:  # peft initialises B = 0 (a no-op LoRA); make it do something
            p.data.normal_(0, 0.5)
    save_lora(unet, tmp_path / "lora")
    tuned = DPTPipeline.from_pretrained(tiny_pipeline_dir, lora=tmp_path / "lora")
    out = tuned(["a red circle"], seeds=[0], num_inference_steps=2, progress=False)
    assert np.abs(out - base).max() > 1e-3
