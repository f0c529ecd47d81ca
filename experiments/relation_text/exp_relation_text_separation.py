"""Experiment: if the text encoder is made to separate relation flips, does the tiny U-Net learn the direction?

docs/relations.md found that the shipped ShapesWorld model's text encoder maps "A left of B" and "A right of
B" (and above/below) to nearly the same token states, so no U-Net-side method can follow the relation word.
This script fixes the text side directly and asks whether the denoiser then follows. One run, on the shipped
model, LoRA on U-Net and text encoder (attention + feed-forward), AdamW, batch ``--batch`` of fresh training
renders (``--relation-share`` relation captions, the rest colour/count/binding; 10% empty captions), loss:

    MSE (the denoising anchor, all samples)
  + contrast-weight * -log sigmoid((e_flip - e_true) / (0.05 e_mean))    on relation samples (the flip as
    the negative caption, same noisy latent; dptune.losses.denoising); with --contrast-form positive-hinge
    relu(e_true - 0.95 e_flip) / e_mean with e_flip detached instead
  + separation-weight * relu(margin - ||H(y) - H(flip y)|| / ||H(y)||)  pushes the flip's token states apart
  + anchor-weight * ||H(y) - H_0(y)||^2 / ||H_0(y)||^2                   keeps every caption where the frozen
    text encoder H_0 put it (so colour, count and binding keep their conditioning)
  + presence-weight * the same contrast, a two-object caption against one of its objects named alone
    (or, with --presence-negative absent, against the caption with one object replaced by an absent kind)
  + grounding-weight * TokenCompose's token loss: each object's colour and shape words attend inside its box
    in the 8x8 and 4x4 cross-attention maps (``attention.py`` in this folder)

The last two (off by default) test ways to keep the objects the contrast drops (docs/relations.md).

Every ``--eval-every`` steps it measures the flip's token-state difference (``dptune shapesworld text-check``'s
number), the denoiser as a diffusion classifier of relation vs flip (``*_flip_classifier``), and generates
``--prompts`` prompts x 2 seeds per category and split, scored by the exact judge; relation prompts once more
with the flip as the negative prompt (``*_relation_flip_negative``). The separation and anchor terms are
extensions for this diagnosis, not DPT. Per-evaluation JSON lines go to stderr; ONE JSON line (all
evaluations) to stdout. docs/relations.md reports a run of

    .venv/bin/python experiments/relation_text/exp_relation_text_separation.py --unet-lr 3e-4 --steps 3000 \
        --eval-every 500
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dptune.backbone import SDBackbone
from dptune.backbone.loading import load_pipeline
from dptune.evaluation.text_check import edit_separability, world_edit_pairs
from dptune.losses.denoising import denoising_contrast_loss, per_sample_error
from dptune.shapesworld.dataset import to_tensor
from dptune.shapesworld.grammar import CATEGORIES, make_prompt
from dptune.shapesworld.judge import judge_batch
from dptune.shapesworld.render import render_scene, scene_for_spec
from dptune.shapesworld.splits import eval_prompts, sample_spec
from dptune.shapesworld.truth import relation_outcome
from dptune.training.lora import add_lora, add_text_encoder_lora

# the experiment's own modules live next to this script, outside the library: experiments/ on the path
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from relation_text.attention import token_attention_loss  # noqa: E402
from relation_text.cross_attention import CrossAttention, capture_cross_attention  # noqa: E402
from relation_text.data import Batch, flip_caption, presence_negative, training_batch  # noqa: E402

FRACTIONS = (0.2, 0.4, 0.6, 0.8)  # timesteps of the diffusion-classifier check, as fractions of T


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="shapesworld", help="the base pipeline folder (default: the shipped one)")
    ap.add_argument("--steps", type=int, default=1000, help="training steps (0: only the step-0 evaluation)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--unet-lr", type=float, default=1e-3)
    ap.add_argument("--text-encoder-lr", type=float, default=1e-3)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--relation-share", type=float, default=0.5)
    ap.add_argument("--contrast-weight", type=float, default=1.0)
    ap.add_argument("--contrast-form", choices=("logistic", "positive-hinge"), default="logistic", help="logistic: "
                    "dptune.losses.denoising (raises the flip's error and lowers the true one's); positive-hinge: "
                    "only lowers the true caption's error where it is not 5%% below the flip's (no push on the flip)")
    ap.add_argument("--separation-weight", type=float, default=1.0)
    ap.add_argument("--margin", type=float, default=0.3, help="target relative token-state difference of a flip "
                    "(the shipped encoder's other edits: 0.45-0.66)")
    ap.add_argument("--anchor-weight", type=float, default=1.0)
    ap.add_argument("--presence-weight", type=float, default=0.0, help="denoising contrast of two-object "
                    "captions (binding, relation) against the caption of one of their objects alone")
    ap.add_argument("--presence-negative", choices=("alone", "absent"), default="alone", help="the presence "
                    "contrast's negative: one object named alone, or the caption with one object replaced by a "
                    "kind absent from the image")
    ap.add_argument("--grounding-weight", type=float, default=0.0, help="TokenCompose-style token loss: each "
                    "object's colour and shape words attend inside its box (8x8 and 4x4 cross-attention)")
    ap.add_argument("--relation-t-min", type=float, default=0.0, help="relation samples (and so the contrast) "
                    "draw their timestep from [this x T, T): high noise is where a layout is decided")
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--prompts", type=int, default=16, help="eval prompts per category and split (x 2 seeds)")
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


def contrast(err_pos: torch.Tensor, err_neg: torch.Tensor, form: str) -> torch.Tensor:
    """The flip contrast on (R,) per-sample errors: dptune's logistic form, or a hinge that only moves the true
    caption's error (relu(e_pos - 0.95 e_neg) / e_bar, the flip's error detached)."""
    if form == "logistic":
        return denoising_contrast_loss(err_pos, err_neg)
    e_bar = (0.5 * (err_pos + err_neg)).detach().clamp_min(1e-8)
    return (torch.relu(err_pos - 0.95 * err_neg.detach()) / e_bar).mean()


def grounding_term(attention: CrossAttention, batch: Batch, sides=(8, 4)) -> torch.Tensor:
    """TokenCompose's token loss (``attention.py``) on the true captions' cross-attention maps of
    ``sides`` x ``sides`` layers, masks area-pooled to each side."""
    bsz, losses = batch.images.shape[0], []
    for side in sides:
        masks = F.adaptive_avg_pool2d(batch.masks, side).flatten(2)  # (B, 2, side*side)
        for maps in attention.maps(side).values():
            losses.append(token_attention_loss(maps[:bsz], masks, batch.tokens))
    return torch.stack(losses).mean()


@torch.no_grad()
def flip_classifier_accuracy(backbone: SDBackbone, split: str, n: int = 64, seed: int = 123) -> tuple:
    """Diffusion-classifier view: % of relation renders whose denoising error (fixed noise) is lower under the
    true caption than under its flip (50 = the denoiser ignores the direction); summed over the timesteps
    ``FRACTIONS`` x T, and per timestep."""
    rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    specs = [sample_spec(rng, "relation", split) for _ in range(n)]
    images = torch.stack([to_tensor(render_scene(scene_for_spec(s, rng))) for s in specs])
    z0 = backbone.encode_images(images)  # (n, 4, 8, 8)
    h_true = backbone.encode_text([make_prompt(s).text for s in specs]).hidden
    h_flip = backbone.encode_text([flip_caption(s) for s in specs]).hidden
    err = torch.zeros(len(FRACTIONS), 2, n)
    for k, frac in enumerate(FRACTIONS):
        t = torch.full((n,), int(frac * backbone.num_train_timesteps))
        noise = torch.randn(z0.shape, generator=gen)
        z_t, target = backbone.add_noise(z0, noise, t), backbone.denoise_target(z0, noise, t)
        for i, h in enumerate((h_true, h_flip)):
            err[k, i] = per_sample_error(backbone.predict_noise(z_t, t, h), target)
    summed = err.sum(0)  # (2, n)
    per_t = [round(100 * (e[0] < e[1]).float().mean().item(), 1) for e in err]
    return round(100 * (summed[0] < summed[1]).float().mean().item(), 1), per_t


@torch.no_grad()
def evaluate(pipe, backbone: SDBackbone, n_prompts: int) -> dict:
    flip = edit_separability(backbone, world_edit_pairs("shapesworld", 64))["flip"]
    out = {"flip_token_diff": round(flip["hidden_rel_diff"], 3), "flip_pooled_cos": round(flip["pooled_cos"], 4)}
    for split in ("id", "ood"):
        out[f"{split}_flip_classifier"], out[f"{split}_flip_classifier_per_t"] = flip_classifier_accuracy(
            backbone, split)
    for split in ("id", "ood"):
        prompts = eval_prompts(split, n_prompts)
        pairs = list(zip(judge_batch(generate(pipe, prompts), prompts + prompts), prompts + prompts, strict=True))
        for cat in CATEGORIES:
            out[f"{split}_{cat}"] = round(100 * float(np.mean([v.correct for v, p in pairs if p.category == cat])), 1)
        out[f"{split}_relation_found_holds_opposite"] = relation_breakdown(
            [(v, p) for v, p in pairs if p.category == "relation"])
        out[f"{split}_relation_flip_negative"] = relation_with_flip_negative(pipe, prompts)
    return out


def relation_breakdown(pairs) -> list[int]:
    """[both objects found, the relation holds, its opposite holds] over (verdict, prompt) relation pairs."""
    outcomes = [o for o in (relation_outcome(p.spec, v.found) for v, p in pairs) if o is not None]
    return [sum(o[i] for o in outcomes) for i in range(3)]


def generate(pipe, prompts, **kwargs) -> list:
    """2 images per prompt (seeds 1000, 1001), DDIM 25 steps, guidance 4, in ``prompts + prompts`` order."""
    images = []
    for k in range(2):
        gen = torch.Generator().manual_seed(1000 + k)
        images += pipe([p.text for p in prompts], num_inference_steps=25, guidance_scale=4.0, generator=gen,
                       **kwargs).images
    return images


def relation_with_flip_negative(pipe, prompts) -> float:
    """Relation accuracy when classifier-free guidance steers away from the flipped caption (negative prompt =
    the flip instead of the empty caption): turns a denoiser that discriminates the direction into guidance."""
    rel = [p for p in prompts if p.category == "relation"]
    images = generate(pipe, rel, negative_prompt=[flip_caption(p.spec) for p in rel])
    return round(100 * float(np.mean([v.correct for v in judge_batch(images, rel + rel)])), 1)


def step_loss(backbone: SDBackbone, ref_encoder, attention: CrossAttention, batch: Batch,
              generator: torch.Generator, a) -> tuple:
    images, captions, flips = batch.images, batch.captions, batch.flips
    attention.clear()
    with torch.no_grad():
        z0 = backbone.encode_images(images)  # (B, 4, 8, 8)
    bsz = z0.shape[0]
    noise = torch.randn(z0.shape, generator=generator)
    big_t = backbone.num_train_timesteps
    t = torch.randint(0, big_t, (bsz,), generator=generator)
    rel = [i for i, f in enumerate(flips) if f is not None]
    two = [i for i, spec in enumerate(batch.two_object) if spec is not None] if a.presence_weight > 0 else []
    if a.relation_t_min > 0 and rel:
        t[rel] = torch.randint(int(a.relation_t_min * big_t), big_t, (len(rel),), generator=generator)
    z_t, target = backbone.add_noise(z0, noise, t), backbone.denoise_target(z0, noise, t)
    # drawn here, not in training_batch, so runs without the presence term keep their data stream
    pick = torch.randint(0, 2, (len(two),), generator=generator).tolist()
    negatives = [flips[i] for i in rel] + [presence_negative(batch.two_object[i], k, a.presence_negative, generator)
                                           for i, k in zip(two, pick, strict=True)]
    hidden = backbone.encode_text(captions + negatives).hidden  # (B + R + P, L, D)
    eps = backbone.predict_noise(torch.cat([z_t, z_t[rel], z_t[two]]), torch.cat([t, t[rel], t[two]]), hidden)
    err = per_sample_error(eps, torch.cat([target, target[rel], target[two]]))  # (B + R + P,)
    terms = {"mse": err[:bsz].mean()}
    if rel:
        terms["contrast"] = contrast(err[rel], err[bsz:bsz + len(rel)], a.contrast_form)
        h_pos, h_neg = hidden[rel].flatten(1), hidden[bsz:bsz + len(rel)].flatten(1)  # (R, L*D)
        diff = (h_pos - h_neg).norm(dim=1) / h_pos.norm(dim=1)
        terms["separation"] = torch.relu(a.margin - diff).mean()
    if a.grounding_weight > 0:
        terms["grounding"] = grounding_term(attention, batch)
    if two:
        terms["presence"] = denoising_contrast_loss(err[two], err[bsz + len(rel):])
    with torch.no_grad():
        ref = ref_encoder(backbone.tokenize(captions))[0]  # (B, L, D): where the frozen encoder puts them
    terms["anchor"] = (hidden[:bsz] - ref).pow(2).mean() / ref.pow(2).mean()
    weights = {"mse": 1.0, "contrast": a.contrast_weight, "separation": a.separation_weight,
               "anchor": a.anchor_weight, "presence": a.presence_weight,
               "grounding": a.grounding_weight}
    return sum(weights[k] * v for k, v in terms.items()), {k: round(v.item(), 4) for k, v in terms.items()}


def main(argv=None) -> None:
    a = parse_args(argv)
    torch.manual_seed(a.seed)
    pipe = load_pipeline(a.model)
    pipe.set_progress_bar_config(disable=True)
    backbone = SDBackbone.from_pipeline(pipe).freeze()
    ref_encoder = copy.deepcopy(backbone.text_encoder)
    evals = [{"step": 0, **evaluate(pipe, backbone, a.prompts)}]
    print(json.dumps(evals[-1]), file=sys.stderr, flush=True)
    add_text_encoder_lora(backbone.text_encoder, a.rank, mlp=True)
    add_lora(backbone.unet, a.rank, "all")
    params = {m: [p for n, p in getattr(backbone, m).named_parameters() if "lora_" in n]
              for m in ("unet", "text_encoder")}
    opt = torch.optim.AdamW([{"params": params["unet"], "lr": a.unet_lr},
                             {"params": params["text_encoder"], "lr": a.text_encoder_lr}], weight_decay=0.0)
    rng, gen, t0 = np.random.default_rng(a.seed), torch.Generator().manual_seed(a.seed), time.perf_counter()
    length = backbone.tokenize([""]).shape[1]
    for step in range(1, a.steps + 1):
        with capture_cross_attention(backbone.unet) as attention:
            batch = training_batch(rng, a.batch, a.relation_share, length)
            loss, terms = step_loss(backbone, ref_encoder, attention, batch, gen, a)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params["unet"] + params["text_encoder"], 1.0)
        opt.step()
        if step % a.eval_every == 0 or step == a.steps:
            evals.append({"step": step, "s": round(time.perf_counter() - t0, 1), "last_terms": terms,
                          **evaluate(pipe, backbone, a.prompts)})
            print(json.dumps(evals[-1]), file=sys.stderr, flush=True)
    print(json.dumps({"experiment": "relation_text_separation", "args": vars(a), "evals": evals}))


if __name__ == "__main__":
    main()
