"""SelfCorrectionConfig validation, GuidedPipeline loading (LoRA), the probe builder, output types and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dptune.adapter import DPTProbe
from dptune.backbone import SDBackbone
from dptune.methods.dpt import MatchScore
from dptune.sampling import GuidedPipeline, SelfCorrectionConfig
from dptune.utils.config import from_dict, to_dict
from helpers import make_tiny_adapter


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


def test_from_pretrained_with_scheduler_and_output_types(tiny_pipeline_dir, tiny_probe):
    pipe = GuidedPipeline.from_pretrained(tiny_pipeline_dir, scheduler="euler")
    assert pipe.scheduler_name == "euler"
    probe = DPTProbe(SDBackbone.from_pipeline(pipe.pipe), make_tiny_adapter())
    cfg = SelfCorrectionConfig(window=(0.0, 1.0), normalize_grad=True, grad_space="model_input")
    kw = dict(seeds=[5], num_inference_steps=3, correction=cfg, objective=MatchScore(probe), progress=False)
    arr = pipe(["a red circle"], output_type="np", **kw)
    pt = pipe(["a red circle"], output_type="pt", **kw)
    pil = pipe(["a red circle"], output_type="pil", **kw)
    assert arr.shape == (1, 16, 16, 3) and 0 <= arr.min() and arr.max() <= 1
    assert tuple(pt.shape) == (1, 3, 16, 16)
    np.testing.assert_allclose(pt.permute(0, 2, 3, 1).numpy(), arr, atol=1e-6)
    assert len(pil) == 1 and pil[0].size == (16, 16)
    plain = pipe(["a red circle"], seeds=[5], num_inference_steps=3, progress=False)
    assert np.abs(plain - arr).max() > 1e-3


def test_from_pretrained_and_probe_errors(tiny_pipeline_dir, tmp_path):
    from dptune.adapter import load_probe, save_adapter

    with pytest.raises(FileNotFoundError, match="LoRA directory .* does not exist"):
        GuidedPipeline.from_pretrained(tiny_pipeline_dir, lora=tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no .safetensors"):
        GuidedPipeline.from_pretrained(tiny_pipeline_dir, lora=tmp_path / "empty")
    backbone = SDBackbone.from_pipeline(GuidedPipeline.from_pretrained(tiny_pipeline_dir).pipe)
    with pytest.raises(FileNotFoundError, match="adapter directory .* does not exist"):
        load_probe(backbone, tmp_path / "nope")
    adapter_dir = save_adapter(make_tiny_adapter(), tmp_path / "adapter")
    with pytest.raises(ValueError, match="in_channels"):  # adapter built for mid (32 ch), probing down0 (16 ch)
        load_probe(backbone, adapter_dir, blocks=["down0"])
    assert load_probe(backbone, adapter_dir).adapter.training is False


def test_call_errors(guided):
    pipe = guided
    with pytest.raises(ValueError, match="needs an objective"):
        pipe(["a red circle"], correction=SelfCorrectionConfig(eta=0.5), num_inference_steps=1, progress=False)
    with pytest.raises(ValueError, match="one seed per prompt"):
        pipe(["a red circle"], seeds=[1, 2], num_inference_steps=1, progress=False)
    with pytest.raises(ValueError, match="non-empty"):
        pipe(["  "], num_inference_steps=1, progress=False)
    with pytest.raises(ValueError, match="multiples of 2"):
        pipe(["a red circle"], height=15, num_inference_steps=1, progress=False)
    with pytest.raises(ValueError, match="output_type"):
        pipe(["a red circle"], output_type="jpg", num_inference_steps=1, progress=False)
    # eta = 0 needs no objective and equals no correction
    a = pipe(["a red circle"], correction=SelfCorrectionConfig(eta=0.0), num_inference_steps=2, progress=False)
    b = pipe(["a red circle"], num_inference_steps=2, progress=False)
    assert np.array_equal(a, b)


def test_lora_folder_from_stage2_loads_exactly(tiny_pipeline_dir, tmp_path):
    """A saved stage-2 LoRA folder loaded by the sampling pipeline gives the LoRA-carrying U-Net it was saved
    from: the same LoRA modules (none missing or extra), the same values, and the same output on a fixed
    input, which differs from the base model's. Catches a partial key mapping, dropped modules and a wrong
    alpha/scale, all of which only "change the output". Deliberate break seen failing: ``load_lora_into``
    dropping one module's keys (the module sets differ)."""
    from dptune.backbone.loading import load_pipeline
    from dptune.sampling import GuidedPipeline
    from dptune.training.lora import add_lora, save_lora
    from helpers import lora_tensors, unet_output

    unet = load_pipeline(tiny_pipeline_dir).unet
    add_lora(unet, rank=2, targets="all")
    torch.manual_seed(0)
    for name, p in unet.named_parameters():
        if "lora_B" in name:  # peft initialises B = 0 (a no-op LoRA); make it do something
            p.data.normal_(0, 0.5)
    save_lora(unet, tmp_path / "lora")
    base = GuidedPipeline.from_pretrained(tiny_pipeline_dir).pipe.unet
    tuned = GuidedPipeline.from_pretrained(tiny_pipeline_dir, lora=tmp_path / "lora").pipe.unet

    loaded, want = lora_tensors(tuned), lora_tensors(unet)
    # 4 transformer blocks (down0, mid, 2 in up1) x attn1/attn2 x q/k/v/out x A/B
    assert loaded.keys() == want.keys() and len(want) == 4 * 2 * 4 * 2
    for name, value in want.items():
        assert torch.equal(loaded[name], value), name
    outs = [unet_output(m) for m in (base, tuned, unet)]  # 3 x (2, 4, 8, 8)
    assert (outs[1] - outs[0]).abs().max() > 1e-2
    torch.testing.assert_close(outs[1], outs[2], rtol=1e-4, atol=1e-5)
