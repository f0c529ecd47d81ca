"""Pretrain the tiny text encoder contrastively on ShapesWorld, CLIP-style, before the U-Net sees it.

Real Stable Diffusion trains its U-Net on a *frozen, pretrained* CLIP text encoder. The shipped tiny model
instead trained its encoder jointly with the U-Net, and that encoder learned to drop the relation words
(``dptune shapesworld text-check``); a frozen *random* encoder keeps them but gives the U-Net poor features
(docs/relations.md). This is the missing analogue of CLIP pretraining: the text encoder and a small image
encoder are trained with the symmetric InfoNCE loss of CLIP (Radford et al. 2021), with minimally edited
captions (colour, shape, count, swap, flip) as extra text negatives of every image, as NegCLIP
(Yuksekgonul et al. 2023) adds hard negatives. Then ``train-base --init-text-encoder OUT
--freeze-text-encoder`` trains the U-Net on it.

Training data cover every composition (held-out ones included: they are held out from the U-Net only, as
CLIP read far more than SD's U-Net saw) in every wording, with hard negatives written in the same wording;
``--no-all-compositions`` restores the first recipe (training-split renders, canonical captions, ID-only
negatives), whose held-out compositions collapsed in the U-Net trained on it (docs/relations.md).

``--tag-weight`` adds a per-word tagging term (``pretrain_text_model``) that keeps every token state
compositional, not only the pooled one; ``--object-weight`` adds the object term, which makes the word that
completes each object (in either word order) name the whole object.

Output: ``OUT/text_encoder`` (a ``CLIPTextModel`` folder, safetensors) and ``OUT/pretrain_log.json`` with the
config, the loss curve and held-out accuracy (image prefers its caption over each hard negative) per edit,
on ID, OOD and paraphrase items.

Resumable like train-base: every ``--checkpoint-minutes`` (and on Ctrl-C / SIGTERM) the run writes an atomic
checkpoint (safetensors + JSON, see ``pretrain_text_state``) to ``OUT.checkpoints``; the same command continues
from it (exactly: same weights as an uninterrupted run), ``--no-resume`` starts over.

CLI: ``dptune shapesworld pretrain-text --out runs/text_pretrained``.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dptune.shapesworld.negatives import sample_hard_negative
from dptune.shapesworld.pretrain_text_model import DualEncoder, contrastive_loss, object_tables, token_tag_table
from dptune.shapesworld.pretrain_text_state import (
    PretrainRun,
    checkpoint_folder,
    discard_checkpoint,
    open_checkpoint,
    train_steps,
)
from dptune.shapesworld.tiny_sd import TinySDConfig
from dptune.shapesworld.train_base_phases import to_pixels, tokenize_captions
from dptune.utils.config import add_dataclass_args, field, from_dict, merge_config, require_positive, to_dict
from dptune.utils.io import ArtefactError


@dataclass
class PretrainTextConfig:
    """Options of :func:`pretrain_text` (text-encoder architecture in ``model``)."""

    model: TinySDConfig = dataclasses.field(
        default_factory=TinySDConfig, metadata={"help": "architecture (TinySDConfig options as a mapping)"}
    )
    seed: int = field(0, help="seed of the renders, the negatives and the initialisation")
    num_images: int = field(30000, help="training renders")
    all_compositions: bool = field(True, help="pretrain on every composition and wording (False: training-split "
                                   "scenes with canonical captions only, the first recipe)")
    negatives_per_image: int = field(2, help="hard-negative captions per training image (drawn once; ID-only edits "
                                     "unless all_compositions)")
    batch_size: int = field(128, help="images per step (in-batch captions are negatives too)")
    steps: int = field(3000, help="optimisation steps")
    lr: float = field(1e-3, help="AdamW learning rate (after a 100-step warm-up)")
    weight_decay: float = field(0.01, help="AdamW weight decay")
    embed_dim: int = field(64, help="width of the joint image-text embedding")
    tag_weight: float = field(0.0, help="weight of the per-word tagging term (each word's final state predicts "
                              "its colour / shape / count / relation, synonyms alike; 0 = contrastive only)")
    object_weight: float = field(0.0, help="weight of the object term (the word completing each colour-shape "
                                 "pair, in either order, predicts the object; 0 = off)")
    eval_items: int = field(256, help="held-out ID, OOD and paraphrase items for the per-edit accuracy")
    threads: int = field(2, help="torch CPU threads")
    log_every: int = field(100, help="record the mean loss every this many steps")
    checkpoint_minutes: float = field(3.0, help="write a resumable checkpoint every this many minutes")
    checkpoint_dir: str = field("", help="checkpoint folder (empty: '<out>.checkpoints' beside --out)")

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = from_dict(TinySDConfig, self.model)
        require_positive(self, ("num_images", "negatives_per_image", "batch_size", "steps", "embed_dim",
                                "eval_items", "threads", "log_every", "checkpoint_minutes"))
        for name in ("tag_weight", "object_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0 (0 = off)")
        if self.batch_size > self.num_images:
            raise ValueError(f"batch_size={self.batch_size} exceeds num_images={self.num_images}; lower it")


def _negative_wording(negative, spec, index: int) -> str:
    """A hard negative in its positive's wording: an edit changes the content, not how it is written (an edit
    that changes the category falls back to the canonical caption)."""
    from dptune.shapesworld.grammar import wording

    return wording(negative, index if negative.category == spec.category else 0)


def _pair(cfg: PretrainTextConfig, i: int, rng: np.random.Generator) -> tuple[np.ndarray, str, list[str]]:
    """Image ``i`` of the pretraining stream, its caption and its hard-negative captions (same wording)."""
    from dptune.shapesworld.grammar import wording
    from dptune.shapesworld.pairs import pretraining_scene, training_scene
    from dptune.shapesworld.render import render_scene

    if cfg.all_compositions:
        spec, scene, w = pretraining_scene(i, cfg.seed)
    else:
        (spec, scene), w = training_scene(i, cfg.seed), 0
    negs = [sample_hard_negative(spec, rng, id_only=not cfg.all_compositions)[1]
            for _ in range(cfg.negatives_per_image)]
    return render_scene(scene), wording(spec, w), [_negative_wording(n, spec, w) for n in negs]


def _training_data(cfg: PretrainTextConfig, tokenizer):
    """Pixels (N, 3, S, S) in [-1, 1], caption ids (N, L) and K hard-negative ids per image (N, K, L)."""
    images, captions, negatives = [], [], []
    rng = np.random.default_rng([cfg.seed, 11])
    for i in range(cfg.num_images):
        image, text, negs = _pair(cfg, i, rng)
        images.append(image)
        captions.append(text)
        negatives += negs
    n, k, length = cfg.num_images, cfg.negatives_per_image, cfg.model.max_length
    ids = tokenize_captions(tokenizer, captions, length)  # (N, L)
    neg_ids = tokenize_captions(tokenizer, negatives, length).view(n, k, length)  # (N, K, L)
    return to_pixels(np.stack(images)), ids, neg_ids


def _held_out(split: str, n: int, seed: int) -> list[tuple[np.ndarray, str, str, str]]:
    """(image, caption, hard negative, edit) items of a dataset split (new scenes; OOD = held-out ones);
    'paraphrase': ID items with caption and negative in a paraphrase wording."""
    from dptune.shapesworld.dataset import ShapesWorldDataset
    from dptune.shapesworld.grammar import PARAPHRASE_WORDINGS, wording
    from dptune.shapesworld.render import render_scene

    ds = ShapesWorldDataset("id" if split == "paraphrase" else split, size=n, seed=seed + 1)
    out = []
    for i in range(n):
        r = ds.record(i)
        w = PARAPHRASE_WORDINGS[i % len(PARAPHRASE_WORDINGS)] if split == "paraphrase" else 0
        out.append((render_scene(r.scene), wording(r.spec, w), _negative_wording(r.hn_spec, r.spec, w), r.hn_edit))
    return out


def edit_accuracy(model: DualEncoder, tokenizer, items, length: int) -> dict[str, float]:
    """Share of items whose image scores its caption above its hard negative, per edit kind."""

    with torch.no_grad():
        img = model.image(to_pixels(np.stack([it[0] for it in items])))  # (N, E)
        pos = model.text(tokenize_captions(tokenizer, [it[1] for it in items], length))
        neg = model.text(tokenize_captions(tokenizer, [it[2] for it in items], length))
    right = ((img * pos).sum(-1) > (img * neg).sum(-1)).tolist()  # (N,)
    out: dict[str, list[bool]] = {}
    for ok, it in zip(right, items, strict=True):
        out.setdefault(it[3], []).append(ok)
    acc = {edit: round(float(np.mean(v)), 4) for edit, v in sorted(out.items())}
    acc["all"] = round(float(np.mean(right)), 4)
    return acc


def _save(text_encoder, log: dict, out_dir: Path) -> None:
    """Write ``out_dir`` whole or not at all: a temp folder renamed into place."""
    from dptune.utils.io import save_json

    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    text_encoder.save_pretrained(str(tmp / "text_encoder"), safe_serialization=True)
    save_json(tmp / "pretrain_log.json", log)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)


def pretrain_text(cfg: PretrainTextConfig, out_dir, progress: bool = True, resume: bool = True) -> dict:
    """Train the text encoder contrastively, continuing from the checkpoint folder unless ``resume=False``;
    save it to ``out_dir/text_encoder``; return the log."""
    from dptune.backbone.tokenizers import build_clip_tokenizer
    from dptune.shapesworld import vocabulary
    from dptune.shapesworld.tiny_sd import build_text_encoder

    torch.set_num_threads(cfg.threads)
    ckpt_dir = checkpoint_folder(cfg, out_dir)
    if not resume:
        discard_checkpoint(ckpt_dir)
    found = open_checkpoint(ckpt_dir, cfg)  # before the renders: a refused checkpoint fails at once
    torch.manual_seed(cfg.seed)
    tokenizer = build_clip_tokenizer(list(vocabulary()), max_length=cfg.model.max_length)
    table, tag_names = token_tag_table(tokenizer)
    model = DualEncoder(cfg, build_text_encoder(cfg.model, tokenizer), table, len(tag_names),
                        object_tables(tokenizer))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    run = PretrainRun(cfg, ckpt_dir, model, opt, torch.Generator().manual_seed(cfg.seed))
    if found is not None:
        run.restore(*found)
    data = _training_data(cfg, tokenizer)  # a pure function of the config: rendered again on resume
    held_out = {s: _held_out(s, cfg.eval_items, cfg.seed) for s in ("id", "ood", "paraphrase")}
    train_steps(run, data, contrastive_loss, progress)
    model.eval()
    acc = {s: edit_accuracy(model, tokenizer, items, cfg.model.max_length) for s, items in held_out.items()}
    log = {
        "config": to_dict(cfg),
        "losses": run.losses,
        "held_out_accuracy": acc,
        "wall_time_s": round(run.elapsed(), 1),
    }
    _save(model.text_encoder, log, Path(out_dir))
    return log


def build_arg_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    p = parser or argparse.ArgumentParser(description="Pretrain the tiny text encoder contrastively (CLIP-style).")
    p.add_argument("--out", required=True, help="output folder (text_encoder/ + pretrain_log.json)")
    p.add_argument("--config", help="YAML/JSON file of PretrainTextConfig options (flags override it)")
    p.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint and start over")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_dataclass_args(p, PretrainTextConfig, skip=("model",))
    return p


def main(argv: list[str] | None = None, prog: str = "pretrain_text") -> int:
    """``prog``: the name errors are reported under (the CLI passes 'dptune shapesworld')."""
    from dptune.shapesworld.train_base import _sigterm_to_interrupt  # the same SIGTERM -> Ctrl-C bridge

    parser = build_arg_parser()
    parser.prog = f"{prog} pretrain-text" if prog != "pretrain_text" else prog
    args = parser.parse_args(argv)
    in_main = threading.current_thread() is threading.main_thread()
    old_term = signal.signal(signal.SIGTERM, _sigterm_to_interrupt) if in_main else None
    cfg = None
    try:
        cfg = merge_config(PretrainTextConfig, args, file=args.config)
        log = pretrain_text(cfg, args.out, progress=not args.no_progress, resume=not args.no_resume)
    except (ValueError, FileNotFoundError, FloatingPointError, ArtefactError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        ckpt = checkpoint_folder(cfg, args.out) if cfg is not None else None
        if ckpt is not None and (ckpt / "latest.json").is_file():
            print(f"{prog}: interrupted; checkpoint saved in {ckpt}, run the same command again (without "
                  "--no-resume) to resume", file=sys.stderr)
        else:
            print(f"{prog}: interrupted before the first checkpoint; run the command again to start", file=sys.stderr)
        return 130
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, old_term if old_term is not None else signal.SIG_DFL)
    acc = log["held_out_accuracy"]
    print(
        f"saved {args.out}/text_encoder in {log['wall_time_s'] / 60:.1f} min; caption vs hard negative, "
        f"ID {acc['id']['all']} / OOD {acc['ood']['all']} / paraphrase {acc['paraphrase']['all']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
