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
    # the text side returns (embeddings, token states); the states feed only the word terms, off here
    model.encode_text = lambda ids: (  # type: ignore[method-assign]
        torch.stack([table[int(i[0])] for i in ids]), torch.zeros(len(ids), 1, 1))
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
    acc = log["held_out_accuracy"]
    assert set(acc) == {"id", "ood", "paraphrase"} and 0 <= acc["id"]["all"] <= 1
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


# --- resumable runs (checkpoints in '<out>.checkpoints') -------------------------------------------------------


def _encoder(out) -> dict:
    from safetensors.torch import load_file

    return load_file(str(out / "text_encoder" / "model.safetensors"))


def _cfg_file(path, cfg) -> str:
    """``cfg`` as a --config file (the CLI takes the ``model`` mapping from a file only)."""
    from dptune.utils.config import to_dict

    path.write_text(json.dumps(to_dict(cfg)))
    return str(path)


def _stop_at(monkeypatch, step: int, stop) -> None:
    """Call ``stop()`` (raise, or signal) inside the loss of 0-based ``step``: ``step`` steps are done then."""
    from dptune.shapesworld import pretrain_text as module

    real, calls = module.contrastive_loss, []

    def loss(*args):
        calls.append(1)
        if len(calls) == step + 1:
            stop()
        return real(*args)

    monkeypatch.setattr(module, "contrastive_loss", loss)


def _checkpoint_state(ckpt) -> dict:
    folder = ckpt / json.loads((ckpt / "latest.json").read_text())["folder"]
    assert {p.suffix for p in ckpt.rglob("*") if p.is_file()} <= {".json", ".safetensors"}  # never pickles
    return json.loads((folder / "state.json").read_text())["state"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """A 7-step run that nothing stops: what every resumed run must reproduce."""
    out = tmp_path_factory.mktemp("reference") / "pre"
    log = pretrain_text(_cfg(steps=7, log_every=3), out, progress=False)
    return _encoder(out), log["losses"]


def _raise(exc):
    def stop():
        raise exc

    return stop


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm", "kill"])
def test_interrupted_run_resumes_exactly(how, uninterrupted, tmp_path, monkeypatch, capsys):
    """Stopped during step 4 of 7 and run again, the text encoder and loss log equal an uninterrupted run's.
    ctrl-c: KeyboardInterrupt mid-step (checkpoint at step 4, before the half-done step); sigterm: `kill` through
    the CLI (the step finishes, checkpoint at step 5); kill: an abrupt failure, resumed from the per-step
    periodic checkpoint (step 4)."""
    import os
    import signal
    import threading

    out, ckpt = tmp_path / "pre", tmp_path / "pre.checkpoints"
    cfg = _cfg(steps=7, log_every=3)
    if how == "ctrl-c":
        _stop_at(monkeypatch, 4, _raise(KeyboardInterrupt))
        with pytest.raises(KeyboardInterrupt):
            pretrain_text(cfg, out, progress=False)
        done = 4
    elif how == "sigterm":
        if threading.current_thread() is not threading.main_thread():
            pytest.skip("signals need the main thread")
        argv = ["--out", str(out), "--config", _cfg_file(tmp_path / "cfg.json", cfg), "--no-progress"]
        _stop_at(monkeypatch, 4, lambda: os.kill(os.getpid(), signal.SIGTERM))
        assert main(argv) == 130
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and str(ckpt) in err and "same command again" in err
        assert signal.getsignal(signal.SIGTERM) is not None  # the CLI put the previous handler back
        done = 5
    else:
        _stop_at(monkeypatch, 4, _raise(RuntimeError("simulated kill")))
        with pytest.raises(RuntimeError, match="simulated kill"):
            pretrain_text(_cfg(steps=7, log_every=3, checkpoint_minutes=1e-9), out, progress=False)
        done = 4
    state = _checkpoint_state(ckpt)
    assert state["step"] == done and len(state["window"]) == done % 3 and not out.exists()
    monkeypatch.undo()

    if how == "sigterm":
        assert main(argv) == 0
        losses = json.loads((out / "pretrain_log.json").read_text())["losses"]
    else:
        losses = pretrain_text(cfg, out, progress=False)["losses"]
    weights, ref_losses = uninterrupted
    got = _encoder(out)
    assert got.keys() == weights.keys() and all(torch.equal(got[k], weights[k]) for k in weights)
    assert losses == ref_losses and _checkpoint_state(ckpt)["step"] == 7


def test_resume_refuses_other_options_and_no_resume_starts_over(tmp_path, monkeypatch):
    out, ckpt = tmp_path / "pre", tmp_path / "ckpt"
    cfg = _cfg(checkpoint_dir=str(ckpt))
    _stop_at(monkeypatch, 2, _raise(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        pretrain_text(cfg, out, progress=False)
    monkeypatch.undo()
    assert _checkpoint_state(ckpt)["step"] == 2 and not (tmp_path / "pre.checkpoints").exists()

    with pytest.raises(ValueError, match=r"lr \(checkpoint 0.001, now 0.002\).*--no-resume.*--checkpoint-dir"):
        pretrain_text(_cfg(checkpoint_dir=str(ckpt), lr=2e-3), out, progress=False)
    with pytest.raises(ValueError, match=r"model\.text_hidden"):
        pretrain_text(_cfg(checkpoint_dir=str(ckpt), model=dict(TINY_MODEL, text_hidden=32)), out, progress=False)
    with pytest.raises(ValueError, match="checkpoint_minutes"):
        _cfg(checkpoint_minutes=0)

    log = pretrain_text(_cfg(checkpoint_dir=str(ckpt), lr=2e-3), out, progress=False, resume=False)
    assert log["config"]["lr"] == 2e-3 and [s for s, _ in log["losses"]] == [2, 4]
    assert sorted(p.name for p in ckpt.iterdir()) == ["latest.json", "step-0000004"]


def test_corrupt_checkpoint_gives_one_clear_error(tmp_path, monkeypatch, capsys):
    from dptune.utils.io import ArtefactError

    out, ckpt = tmp_path / "pre", tmp_path / "pre.checkpoints"
    cfg = _cfg()
    _stop_at(monkeypatch, 2, _raise(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        pretrain_text(cfg, out, progress=False)
    monkeypatch.undo()
    weights = ckpt / "step-0000002" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # truncated

    with pytest.raises(ArtefactError, match=f"checkpoint folder {ckpt} cannot be resumed.*delete.*--no-resume"):
        pretrain_text(cfg, out, progress=False)
    argv = ["--out", str(out), "--config", _cfg_file(tmp_path / "cfg.json", cfg), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(ckpt) in err and "--no-resume" in err

    (ckpt / "step-0000002" / "state.json").write_text('{"state": {"st')  # a torn JSON file: same error
    with pytest.raises(ArtefactError, match=f"checkpoint folder {ckpt} cannot be resumed.*--no-resume"):
        pretrain_text(cfg, out, progress=False)
    assert main([*argv, "--no-resume"]) == 0 and _checkpoint_state(ckpt)["step"] == 4


def test_word_tags_cover_the_vocabulary_and_join_synonyms():
    from dptune.shapesworld import vocabulary
    from dptune.shapesworld.pretrain_text_model import IGNORE, token_tag_table, word_tags

    tags = word_tags()
    assert set(tags) == set(vocabulary())
    assert tags["beneath"] == tags["under"] == tags["below"] != tags["above"] == tags["over"]
    assert tags["3"] == tags["three"] and tags["circles"] == tags["circle"] and tags["and"] == tags["the"]
    _, tok = _model(_cfg())
    table, names = token_tag_table(tok)
    ids = tok("a red circle beneath 3 blue squares").input_ids
    got = [names[int(table[i])] if int(table[i]) != IGNORE else None for i in ids]
    assert got == [None, "other", "colour:red", "shape:circle", "relation:below", "count:3", "colour:blue",
                   "shape:square", None]


def _fit(model, loss_fn, ids, steps: int = 40) -> tuple[float, float]:
    """(first, last) value of ``loss_fn(ids)`` over ``steps`` Adam steps on ``model``'s parameters."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = loss_fn(ids).item()
    for _ in range(steps):
        loss = loss_fn(ids)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return first, loss.item()


def test_tag_term_is_off_by_default_and_learns_when_on():
    from dptune.shapesworld.pretrain_text_model import token_tag_table

    torch.manual_seed(0)
    plain, tok = _model(_cfg())
    assert plain.tag_weight == 0 and not hasattr(plain, "tagger")
    with pytest.raises(ValueError, match="tag_weight=-1"):
        _cfg(tag_weight=-1)
    cfg = _cfg(tag_weight=1.0)
    table, names = token_tag_table(tok)
    from dptune.shapesworld.tiny_sd import build_text_encoder

    model = DualEncoder(cfg, build_text_encoder(cfg.model, tok), table, len(names))
    ids = tok(["a red circle beneath a blue square", "3 green triangles", "a yellow square over a red circle"],
              padding="max_length", max_length=cfg.model.max_length, return_tensors="pt").input_ids
    first, last = _fit(model, model.tag_loss, ids)
    assert last < 0.2 * first  # the words' states learn to say what the words mean
    pixels = torch.zeros(3, 3, 32, 32)
    neg = ids[[1, 2, 0]].unsqueeze(1)  # (3, 1, L)
    with torch.no_grad():  # the total is the contrastive part plus the weighted tag part
        both = contrastive_loss(model, pixels, ids, neg)
        model.tag_weight = 0.0
        assert torch.allclose(both, contrastive_loss(model, pixels, ids, neg) + model.tag_loss(ids), atol=1e-5)


def test_object_targets_mark_the_word_that_completes_each_object_in_either_order():
    from dptune.shapesworld.pretrain_text_model import IGNORE, object_tables, object_targets

    _, tok = _model(_cfg())
    colour_of, shape_of, n_objects = object_tables(tok)
    assert n_objects == 12

    def named(caption):
        ids = tok(caption, return_tensors="pt").input_ids  # (1, L)
        target = object_targets(ids, colour_of, shape_of)[0]
        words = tok.convert_ids_to_tokens(ids[0])
        return [(w.replace("</w>", ""), int(t)) for w, t in zip(words, target, strict=True) if int(t) != IGNORE]

    red_circle, green_square = 0 * 3 + 0, 1 * 3 + 1  # COLOURS x SHAPES order: (red, green, ...) x (circle, square, ...)
    assert named("a red circle and a green square") == [("circle", red_circle), ("square", green_square)]
    assert named("a circle that is red and a square that is green") == [("red", red_circle),
                                                                        ("green", green_square)]
    assert named("3 circles in red") == [("red", red_circle)]
    assert named("a red circle beneath 2 green squares") == [("circle", red_circle), ("squares", green_square)]


def test_object_term_is_off_by_default_and_learns_when_on():
    from dptune.shapesworld.pretrain_text_model import object_tables
    from dptune.shapesworld.tiny_sd import build_text_encoder

    torch.manual_seed(0)
    plain, tok = _model(_cfg())
    assert plain.object_weight == 0 and not hasattr(plain, "object_head")
    with pytest.raises(ValueError, match="object_weight=-1"):
        _cfg(object_weight=-1)
    cfg = _cfg(object_weight=0.5)
    model = DualEncoder(cfg, build_text_encoder(cfg.model, tok), objects=object_tables(tok))
    ids = tok(["a circle that is red and a square that is green", "a green circle and a red square"],
              padding="max_length", max_length=cfg.model.max_length, return_tensors="pt").input_ids
    first, last = _fit(model, model.object_loss, ids)
    assert last < 0.2 * first
    pixels, neg = torch.zeros(2, 3, 32, 32), ids[[1, 0]].unsqueeze(1)  # (2, 1, L)
    with torch.no_grad():  # the total adds the weighted object part
        both = contrastive_loss(model, pixels, ids, neg)
        model.object_weight = 0.0
        assert torch.allclose(both, contrastive_loss(model, pixels, ids, neg) + 0.5 * model.object_loss(ids),
                              atol=1e-5)
