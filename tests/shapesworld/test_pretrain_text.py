"""Contrastive text-encoder pretraining (pretrain-text) and train-base --init-text-encoder."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dptune.shapesworld.pretrain_text import DualEncoder, PretrainTextConfig, contrastive_loss, main, pretrain_text
from helpers import TINY_MODEL


def _cfg(**kw) -> PretrainTextConfig:
    base = dict(model=dict(TINY_MODEL), num_images=64, batch_size=16, steps=4, eval_items=8, threads=1, log_every=2)
    return PretrainTextConfig(**{**base, **kw})


def _model(cfg):
    from dptune.shapesworld import vocabulary
    from dptune.shapesworld.tiny_sd import build_text_encoder
    from dptune.shapesworld.tokenizer import build_clip_tokenizer

    tok = build_clip_tokenizer(list(vocabulary()), max_length=cfg.model.max_length)
    return DualEncoder(cfg, build_text_encoder(cfg.model, tok)), tok


def test_loss_ranks_own_caption_over_hard_negatives():
    """At a perfect model (identical image and caption embeddings, orthogonal negatives) the loss is ~0;
    swapping a caption with its hard negative makes it large."""
    torch.manual_seed(0)
    cfg = _cfg()
    model, _ = _model(cfg)
    emb = torch.nn.functional.normalize(torch.eye(8)[:4] * 1.0, dim=-1)  # (4, 8) orthonormal
    model.image = lambda pixels: emb  # type: ignore[method-assign]
    table = {i: emb[i] for i in range(4)}
    table.update({10 + i: torch.roll(emb[i], 4) for i in range(4)})  # hard negatives: orthogonal to all
    model.text = lambda ids: torch.stack([table[int(i[0])] for i in ids])  # type: ignore[method-assign]
    model.log_scale.data.fill_(np.log(100.0))
    ids = torch.arange(4).view(4, 1)
    neg = (10 + torch.arange(4)).view(4, 1, 1)
    good = contrastive_loss(model, None, ids, neg)
    bad = contrastive_loss(model, None, neg.view(4, 1), ids.view(4, 1, 1))  # captions and negatives swapped
    assert good.item() < 1e-3 and bad.item() > 10


def test_pretrain_writes_encoder_that_train_base_loads(tmp_path, monkeypatch):
    from transformers import CLIPTextModel

    from dptune.shapesworld.train_base import TrainBaseConfig, train_base

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    log = pretrain_text(_cfg(), tmp_path / "pre", progress=False)
    assert [s for s, _ in log["losses"]] == [2, 4] and all(np.isfinite(v) for _, v in log["losses"])
    assert set(log["held_out_accuracy"]) == {"id", "ood"} and 0 <= log["held_out_accuracy"]["id"]["all"] <= 1
    saved = json.loads((tmp_path / "pre" / "pretrain_log.json").read_text())
    assert saved["config"]["model"]["text_hidden"] == 16 and not (tmp_path / "pre.tmp").exists()
    pre = CLIPTextModel.from_pretrained(tmp_path / "pre" / "text_encoder").state_dict()

    cfg = TrainBaseConfig(
        model=dict(TINY_MODEL),
        num_images=32,
        batch_size=8,
        vae_steps=1,
        max_unet_steps=2,
        threads=1,
        freeze_text_encoder=True,
        init_text_encoder=str(tmp_path / "pre"),
        checkpoint_dir=str(tmp_path / "ckpt"),
    )
    train_base(cfg, tmp_path / "sd", progress=False)
    text = CLIPTextModel.from_pretrained(tmp_path / "sd" / "text_encoder").state_dict()
    assert all(torch.equal(v, pre[k]) for k, v in text.items())  # frozen at the pretrained weights

    wrong = TrainBaseConfig(
        **{**cfg.__dict__, "model": dict(TINY_MODEL, text_hidden=32), "checkpoint_dir": str(tmp_path / "ckpt2")}
    )
    with pytest.raises(ValueError, match="init_text_encoder.*does not fit"):
        train_base(wrong, tmp_path / "sd2", progress=False)
    with pytest.raises(FileNotFoundError, match="pretrain-text"):
        missing = TrainBaseConfig(
            **{**cfg.__dict__, "init_text_encoder": str(tmp_path / "nope"), "checkpoint_dir": str(tmp_path / "ckpt3")}
        )
        train_base(missing, tmp_path / "sd3", progress=False)


def test_cli_rejects_bad_option(capsys):
    assert main(["--out", "/nonexistent/x", "--steps", "0"]) == 2
    assert "steps" in capsys.readouterr().err


def test_dptune_cli_passes_options_through(capsys):
    from dptune.cli.main import main as dptune_main

    assert dptune_main(["shapesworld", "pretrain-text", "--out", "/nonexistent/x", "--batch-size", "0"]) == 2
    assert "batch_size" in capsys.readouterr().err
