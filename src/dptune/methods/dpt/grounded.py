"""Grounded self-correction: Eq. 9's update, but climbing the adapter's REC boxes (an extension, not the paper).

The paper's self-correction follows the matching score s(z_t, y) of the *global* matching queries. A prompt
that states a spatial relation ("a red book to the left of a blue cup") also names two objects the adapter's
*grounding* queries can localise (Eqs. 5-7 train them on referring expressions). Here the corrected
objective is a hinge on where the REC head puts them:

    g(z_t) = -relu(margin - d_rel(c(subject), c(anchor)))

with c(.) the centre of the REC head's box for "the <object>" (boxes averaged with the softmax of the
grounding probabilities, so the centre is differentiable) and d_rel the signed offset along the relation's
axis (> 0 when the relation holds). Because the REC head was trained on low-noise latents, it reads the
denoiser's estimate of the clean latent re-noised to a low timestep ``ground_t`` (x0 by Tweedie's formula,
re-noised with the predicted noise, as DDIM does), so the gradient passes through one full U-Net pass and
one truncated pass per object. Prompts without a relation the parser recognises get no correction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Relation phrases -> canonical relation. Longest first so "on the left of" wins over "left of".
RELATION_WORDS: dict[str, str] = {
    "to the left of": "left", "on the left of": "left", "left of": "left",
    "to the right of": "right", "on the right of": "right", "right of": "right",
    "on top of": "above", "above": "above", "over": "above",
    "below": "below", "beneath": "below", "under": "below", "underneath": "below",
}
_ARTICLE = re.compile(r"^(a|an|the|one)\s+", re.IGNORECASE)
_RELATION = re.compile(
    r"^\s*(?P<subject>.+?)\s+(?P<rel>" + "|".join(sorted(map(re.escape, RELATION_WORDS), key=len, reverse=True))
    + r")\s+(?P<anchor>.+?)\s*[.!]?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class RelationTarget:
    """A prompt's spatial relation: ``subject`` lies ``relation`` of ``anchor`` (referring phrases)."""

    subject: str  # "the red circle"
    relation: str  # left / right / above / below
    anchor: str  # "the blue square"


def referring_phrase(noun_phrase: str) -> str:
    """"a red circle" -> "the red circle" (the form of the referring expressions REC was trained on)."""
    return "the " + _ARTICLE.sub("", noun_phrase.strip())


def parse_relation(prompt: str) -> RelationTarget | None:
    """The spatial relation stated by ``prompt`` ("X to the left of Y", "X above Y", ...), or None."""
    m = _RELATION.match(prompt)
    if m is None:
        return None
    subject, anchor = m["subject"].strip(" ,"), m["anchor"].strip(" ,")
    if not subject or not anchor:
        return None
    return RelationTarget(referring_phrase(subject), RELATION_WORDS[m["rel"].lower()], referring_phrase(anchor))


@dataclass
class GroundingTargets:
    """The relation prompts of one generation batch, with their referring phrases encoded once."""

    samples: torch.Tensor  # (R,) long: batch index of each relation prompt
    relations: list[str]  # (R,) canonical relation per relation prompt
    hidden: torch.Tensor  # (2R, L, D) U-Net context: subject_0, anchor_0, subject_1, anchor_1, ...
    pooled: torch.Tensor  # (2R, Dp) pooled text embeddings, same order

    @classmethod
    def build(cls, probe, prompts: list[str]) -> GroundingTargets:
        parsed = [(b, parse_relation(p)) for b, p in enumerate(prompts)]
        found = [(b, r) for b, r in parsed if r is not None]
        phrases = [phrase for _, r in found for phrase in (r.subject, r.anchor)]
        emb = probe.encode_text(phrases) if phrases else None
        return cls(
            samples=torch.tensor([b for b, _ in found], dtype=torch.long),
            relations=[r.relation for _, r in found],
            hidden=emb.hidden if emb is not None else torch.empty(0),
            pooled=emb.pooled if emb is not None else torch.empty(0),
        )

    def __len__(self) -> int:
        return len(self.relations)


# (sign on dx, sign on dy) of the anchor-minus-subject offset that is > 0 when the relation holds
_AXIS_SIGNS: dict[str, tuple[float, float]] = {
    "left": (1.0, 0.0), "right": (-1.0, 0.0), "above": (0.0, 1.0), "below": (0.0, -1.0),
}


def signed_offset(subject: torch.Tensor, anchor: torch.Tensor, relations: list[str]) -> torch.Tensor:
    """(R, 2) normalised (cx, cy) centres -> (R,) offset along each relation's axis, > 0 when it holds.

    Image y grows downwards, so "above" means a smaller cy than the anchor's.
    """
    signs = torch.tensor([_AXIS_SIGNS[r] for r in relations], device=subject.device, dtype=subject.dtype)  # (R, 2)
    return (signs * (anchor - subject)).sum(-1)


def clean_estimate(x: torch.Tensor, model_out: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str):
    """Tweedie's estimate of the clean latent and the implied noise from the U-Net output at z_t.

    ``x`` (B, C, h, w) is the DDPM-form latent sqrt(abar) x0 + sqrt(1 - abar) eps; returns (x0, eps).
    """
    a, s = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
    if prediction_type == "epsilon":
        eps = model_out
        return (x - s * eps) / a, eps
    if prediction_type == "v_prediction":  # v = a eps - s x0
        return a * x - s * model_out, s * x + a * model_out
    raise ValueError(f"unsupported prediction_type {prediction_type!r} (expected 'epsilon' or 'v_prediction')")


def box_centres(logits_p: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """(R, Q) grounding logits, (R, Q, 4) cxcywh -> (R, 2) centres weighted by softmax(logits): a
    differentiable stand-in for "the box of the most probable query" (the REC prediction)."""
    w = logits_p.float().softmax(-1)  # (R, Q)
    return (w[..., None] * boxes.float()[..., :2]).sum(1)


def relation_objective(probe, x: torch.Tensor, t: torch.Tensor, text_hidden: torch.Tensor,
                       targets: GroundingTargets, ground_t: int, margin: float) -> torch.Tensor:
    """g(z_t) per sample -> (B,) fp32 (0 for samples without a relation), differentiable w.r.t. ``x``.

    ``x`` (B, C, h, w) is the U-Net input at timestep ``t``, ``text_hidden`` (B, L, D) its conditioning.
    """
    bb, unet = probe.backbone, probe.unet
    total = torch.zeros(x.shape[0], device=x.device, dtype=torch.float32)
    if len(targets) == 0:
        return total
    idx = targets.samples.to(x.device)  # (R,)
    xs = x[idx]  # (R, C, h, w)
    tt = torch.as_tensor(t, device=x.device).reshape(-1).expand(len(idx))
    alphas = bb.noise_scheduler.alphas_cumprod.to(x.device, torch.float32)
    out = bb.predict_noise(xs.to(unet.dtype), tt, text_hidden[idx].to(unet.dtype)).float()
    x0, eps = clean_estimate(xs.float(), out, alphas[int(tt[0])], bb.noise_scheduler.config.prediction_type)
    a_g = alphas[ground_t]
    x_g = a_g.sqrt() * x0 + (1 - a_g).sqrt() * eps  # (R, C, h, w) re-noised to ground_t
    x_g = x_g.repeat_interleave(2, dim=0)  # (2R, ...) subject, anchor of each prompt
    t_g = torch.full((x_g.shape[0],), ground_t, dtype=torch.long, device=x.device)
    rec = probe(x_g.to(unet.dtype), t_g, targets.hidden.to(x.device, unet.dtype))
    centres = box_centres(rec.logits_p, rec.boxes).view(len(idx), 2, 2)  # (R, {subject, anchor}, xy)
    along = signed_offset(centres[:, 0], centres[:, 1], targets.relations)  # (R,)
    return total.index_add(0, idx, -F.relu(margin - along))
