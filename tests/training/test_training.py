"""Training stages on tiny components: runs, checkpoints, exact resume, clear failures (LoRA export:
test_training_lora.py)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from dptune.training import TrainConfig, TrainingDiverged, train
from dptune.training.loop import Trainer
from dptune.utils.io import ArtefactError, load_tensors
from helpers import final_weights
from helpers import tiny_train_config as _cfg


def test_probe_trains_and_writes_artefacts(tmp_path, tiny_pipeline_dir):
    cfg = _cfg(tmp_path, tiny_pipeline_dir, steps=4, validate_every=2)
    result = train(cfg, progress=False)
    out = tmp_path / "run"
    assert result.step == 4 and len(result.validation) == 2
    assert {"itm_hn", "rec_p1", "itm_i2t_all"} <= set(result.validation[-1])
    assert json.loads((out / "latest.json").read_text())["step"] == 4
    assert (out / "final" / "adapter" / "adapter.safetensors").is_file()
    assert (out / "best" / "adapter" / "adapter_config.json").is_file()
    assert json.loads((out / "checkpoints" / "step-0000004" / "config.json").read_text())["stage"] == "probe"
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if x["kind"] == "train"] == [1, 2, 3, 4]
    assert all(x["total"] > 0 for x in lines if x["kind"] == "train")
    assert list((out / "dptune").rglob("events.out.tfevents*"))  # TensorBoard scalars
    saved = load_tensors(out / "checkpoints" / "step-0000004" / "trainable.safetensors")
    assert saved and all(k.startswith("probe.adapter.") for k in saved)  # stage 1: SD stays frozen


class Killed(Exception):
    pass


def test_kill_and_resume_continues_from_the_saved_state(tmp_path, tiny_pipeline_dir, monkeypatch):
    """A run killed after its step-2 checkpoint resumes there: it executes only steps 3-5 and ends with the
    same weights as an uninterrupted run; corrupting the saved AdamW moments changes the result, so the
    optimizer state really is restored. (Per-step seeds make a restart from scratch bit-identical too, so
    equal weights alone cannot tell.) Deliberate break seen failing: ``Trainer.resume`` made a no-op
    (the resumed run executed 5 steps and the corrupted moments changed nothing)."""
    from dptune.utils.io import save_tensors

    kw = dict(stage="tune", steps=5, lr_schedule="cosine", warmup_steps=1, mse_weight=0.5, grad_accum=2)
    full = train(_cfg(tmp_path / "a", tiny_pipeline_dir, **kw), progress=False)

    original = Trainer.train_step
    executed: list[int] = []  # the step counter at the start of every optimiser step actually run

    def dying(self, batches):
        if self.step == 3:  # checkpoints exist at step 2; the process dies mid-way to 4
            raise Killed
        return original(self, batches)

    def counting(self, batches):
        executed.append(self.step)
        return original(self, batches)

    monkeypatch.setattr(Trainer, "train_step", dying)
    with pytest.raises(Killed):
        train(_cfg(tmp_path / "b", tiny_pipeline_dir, **kw), progress=False)
    shutil.copytree(tmp_path / "b", tmp_path / "c")  # a second copy of the killed run, to corrupt
    saved = tmp_path / "c" / "run" / "checkpoints" / "step-0000002" / "optimizer.safetensors"
    moments = load_tensors(saved)
    assert any(k.endswith(".exp_avg") for k in moments)
    save_tensors(saved, {k: -v if k.endswith(".exp_avg") else v for k, v in moments.items()})

    monkeypatch.setattr(Trainer, "train_step", counting)
    resumed = train(_cfg(tmp_path / "b", tiny_pipeline_dir, **kw), progress=False)
    assert executed == [2, 3, 4] and resumed.step == full.step == 5  # only the remaining steps ran
    a, b = final_weights(full), final_weights(resumed)
    assert a.keys() == b.keys() and any("lora" in k for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    corrupted = final_weights(train(_cfg(tmp_path / "c", tiny_pipeline_dir, **kw), progress=False))
    assert max((corrupted[k] - b[k]).abs().max().item() for k in b) > 1e-4  # measured 2e-3: the moments were used


def test_resume_refuses_a_different_config(tmp_path, tiny_pipeline_dir):
    train(_cfg(tmp_path, tiny_pipeline_dir, steps=2), progress=False)
    with pytest.raises(ArtefactError, match="different settings.*lora_rank|different settings.*stage"):
        train(_cfg(tmp_path, tiny_pipeline_dir, steps=3, stage="tune"), progress=False)


def test_nan_loss_stops_with_clear_message(tmp_path, tiny_pipeline_dir, monkeypatch):
    from dptune.training.objective import DPTObjective

    real_forward = DPTObjective.forward

    def nan_at_step_3(self, inputs):
        total, terms = real_forward(self, inputs)
        return (total * float("nan"), terms) if nan_at_step_3.calls >= 2 else (total, terms)

    nan_at_step_3.calls = 0

    def counting(self, inputs):
        result = nan_at_step_3(self, inputs)
        nan_at_step_3.calls += 1
        return result

    monkeypatch.setattr(DPTObjective, "forward", counting)
    with pytest.raises(TrainingDiverged, match=r"nan at step 2.*last good checkpoint: .*step-0000002"):
        train(_cfg(tmp_path, tiny_pipeline_dir, steps=5), progress=False)


def test_config_validation():
    with pytest.raises(ValueError, match="lora_text_encoder needs stage 'tune'"):
        TrainConfig(lora_text_encoder=True)
    with pytest.raises(ValueError, match="stage must be one of"):
        TrainConfig(stage="pretrain")
    with pytest.raises(ValueError, match="mse_weight needs stage 'tune'"):
        TrainConfig(stage="probe", mse_weight=1.0)
    assert TrainConfig(blocks="mid, up0").blocks == ["mid", "up0"]


def test_unknown_block_is_reported(tmp_path, tiny_pipeline_dir):
    with pytest.raises(ValueError, match=r"unknown U-Net block\(s\) \['up9'\].*valid names"):
        train(_cfg(tmp_path, tiny_pipeline_dir, steps=1, blocks=["up9"]), progress=False)


def test_validation_rec_precision_on_planted_boxes(tiny_backbone, monkeypatch):
    """REC P@1 = IoU >= 0.5 between the gold box and the most probable query's box (both cxcywh)."""
    from dptune.adapter import AdapterConfig, AdapterOutput, DiscriminativeAdapter, DPTProbe
    from dptune.data import collate_samples
    from dptune.shapesworld import ShapesWorldDataset
    from dptune.training.objective import DPTObjective
    from dptune.training.validation import discriminative_metrics

    adapter = DiscriminativeAdapter(AdapterConfig(in_channels=32, text_dim=32, d_model=32, heads=4, ffn=64,
                                                  num_queries=6, num_match_queries=2))
    objective = DPTObjective(DPTProbe(tiny_backbone, adapter))
    ds = ShapesWorldDataset("id", size=4, seed=0)
    batch = collate_samples([ds[i] for i in range(4)])
    shift = {"dx": 0.0}

    def planted(inputs):
        gold = inputs["ref_box"]  # (B, 4)
        boxes = torch.full((6 * 4, 4, 4), 0.5)
        boxes[20:, 2] = gold + torch.tensor([shift["dx"], 0.0, 0.0, 0.0])  # query 2 of the REC rows
        logits = torch.zeros(24, 4)
        logits[20:, 2] = 5.0
        out = AdapterOutput(queries=torch.zeros(24, 6, 32), match_emb=torch.zeros(24, 2, 32), logits_p=logits,
                            boxes=boxes, obj_emb=torch.zeros(24, 4, 32), logit_scale=torch.tensor(10.0))
        scores = torch.tensor([[0.9, 0.1, 0.0]] * 4)
        return out, scores, scores, None

    monkeypatch.setattr(objective, "outputs", planted)
    assert discriminative_metrics(objective, [batch], t=250)["rec_p1"] == 1.0
    assert discriminative_metrics(objective, [batch], t=250)["itm_hn"] == 1.0
    shift["dx"] = 0.5  # boxes moved far off their targets
    assert discriminative_metrics(objective, [batch], t=250)["rec_p1"] == 0.0


def test_rec_pass_draws_timesteps_from_its_own_window(tiny_backbone):
    """``rec_t_max``: ITM passes keep t in [t_min, t_max), the REC pass (rows 5B:6B) uses [t_min, rec_t_max)."""
    from dptune.adapter import AdapterConfig, DiscriminativeAdapter, DPTProbe
    from dptune.data import collate_samples
    from dptune.shapesworld import ShapesWorldDataset
    from dptune.training.objective import DPTObjective, prepare_inputs

    batch = collate_samples([ShapesWorldDataset("id", size=8, seed=0)[i] for i in range(8)])
    gen = torch.Generator().manual_seed(0)
    inputs = prepare_inputs(tiny_backbone, batch, gen, (900, 1000), rec_t_range=(0, 10))
    assert ((inputs["t"] >= 900) & (inputs["t"] < 1000)).all() and (inputs["t_rec"] < 10).all()
    adapter = DiscriminativeAdapter(AdapterConfig(in_channels=32, text_dim=32, d_model=32, heads=4, ffn=64,
                                                  num_queries=6, num_match_queries=2))
    _, tt, _, _ = DPTObjective(DPTProbe(tiny_backbone, adapter))._passes(inputs)
    assert torch.equal(tt[:40], inputs["t"].repeat(5)) and torch.equal(tt[40:], inputs["t_rec"])
    shared = prepare_inputs(tiny_backbone, batch, torch.Generator().manual_seed(0), (900, 1000))
    assert torch.equal(shared["t_rec"], shared["t"])  # default: one timestep per sample for all six passes


def test_rec_window_and_dropout_reach_the_run(tmp_path, tiny_pipeline_dir):
    with pytest.raises(ValueError, match="rec_t_max"):
        _cfg(tmp_path, tiny_pipeline_dir, t_min=300, rec_t_max=200)
    from dptune.adapter import load_adapter_config

    train(_cfg(tmp_path, tiny_pipeline_dir, steps=1, rec_t_max=300, adapter_dropout=0.0), progress=False)
    assert load_adapter_config(tmp_path / "run" / "final" / "adapter").dropout == 0.0
    assert json.loads((tmp_path / "run" / "final" / "config.json").read_text())["rec_t_max"] == 300


def test_text_encoder_lora_gets_its_own_learning_rate():
    from torch import nn

    from dptune.training.setup import param_groups

    model = nn.Module()
    model.text_encoder, model.adapter = nn.Linear(3, 3), nn.Linear(3, 3)
    same = param_groups(model, 0.01)
    assert all("lr" not in g for g in same) and sum(len(g["params"]) for g in same) == 4
    groups = param_groups(model, 0.01, text_encoder_lr=1e-3)
    own = [g for g in groups if "lr" in g]
    assert {id(p) for g in own for p in g["params"]} == {id(p) for p in model.text_encoder.parameters()}
    assert all(g["lr"] == 1e-3 for g in own) and {g["weight_decay"] for g in own} == {0.0, 0.01}


def test_denoising_contrast_term_trains(tmp_path, tiny_pipeline_dir):
    cfg = _cfg(tmp_path, tiny_pipeline_dir, stage="tune", steps=2, contrast_weight=1.0, lora_text_encoder=True)
    train(cfg, progress=False)
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train_lines = [x for x in lines if x["kind"] == "train"]
    assert all(0 < x["contrast"] < 10 and "mse" in x for x in train_lines)  # mse is logged (weight 0 here)
    with pytest.raises(ValueError, match="contrast_weight needs stage 'tune'"):
        TrainConfig(contrast_weight=1.0)


def test_resume_check_reads_a_missing_key_as_its_default():
    from dptune.training.checkpoint import check_resume_config
    from dptune.utils.config import to_dict

    old = to_dict(TrainConfig(stage="tune"))
    del old["lora_text_encoder"]  # a checkpoint written before the option existed
    check_resume_config(old, to_dict(TrainConfig(stage="tune")))  # same as the default: resumes
    with pytest.raises(ArtefactError, match="lora_text_encoder: checkpoint False vs now True"):
        check_resume_config(old, to_dict(TrainConfig(stage="tune", lora_text_encoder=True)))
