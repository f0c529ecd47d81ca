"""The full DPT discriminative objective, paper Eq. 8: L = L^match + L^ground (per sampled timestep)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from dptune.losses.grounding import GoldBoxes, grounding_loss
from dptune.losses.matching import image_to_text_loss, in_batch_matching_loss, text_to_image_loss
from dptune.utils.config import field


@dataclass
class LossWeights:
    """Weights of the DPT loss terms. Defaults: paper Appendix B.3.2 (lambda = 1, 5, 2, 1; the same 1, 5, 2
    for the Eq. 5 matching cost) and the official code (t2i = i2t = 1, eos_coef 0.1, no in-batch term)."""

    t2i: float = field(1.0, help="weight of the text->image contrastive loss (Eq. 3)")
    i2t: float = field(1.0, help="weight of the image->text contrastive loss (Eq. 4)")
    in_batch: float = field(
        0.0, help="weight of the optional in-batch (CLIP-style) T->I + I->T losses; 0 = hard negatives only"
    )
    prob: float = field(1.0, help="lambda_0: grounding-probability BCE of the matched query (Eq. 7)")
    l1: float = field(5.0, help="lambda_1: L1 box loss (Eq. 7)")
    giou: float = field(2.0, help="lambda_2: 1 - GIoU box loss (Eq. 7)")
    t2o: float = field(1.0, help="lambda_3: text->object contrastive loss (Eqs. 6-7)")
    cost_prob: float = field(1.0, help="weight of -p in the query matching cost (Eq. 5)")
    cost_l1: float = field(5.0, help="weight of L1 in the query matching cost (Eq. 5)")
    cost_giou: float = field(2.0, help="weight of -GIoU in the query matching cost (Eq. 5)")
    eos_coef: float = field(0.1, help="BCE weight of unmatched grounding queries (as DETR's eos_coef)")

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not isinstance(value, int | float) or value < 0:
                raise ValueError(f"LossWeights.{name} must be a number >= 0; got {value!r}")


def _matching_terms(
    i2t_scores: torch.Tensor | None,
    t2i_scores: torch.Tensor | None,
    in_batch_scores: torch.Tensor | None,
    logit_scale: torch.Tensor | float,
    w: LossWeights,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    terms: dict[str, torch.Tensor] = {}
    total: Any = 0.0
    if t2i_scores is not None:
        terms["t2i"] = text_to_image_loss(t2i_scores, logit_scale)
        total = total + w.t2i * terms["t2i"]
    if i2t_scores is not None:
        terms["i2t"] = image_to_text_loss(i2t_scores, logit_scale)
        total = total + w.i2t * terms["i2t"]
    if in_batch_scores is not None:
        terms["t2i_in_batch"], terms["i2t_in_batch"] = in_batch_matching_loss(in_batch_scores, logit_scale)
        total = total + w.in_batch * (terms["t2i_in_batch"] + terms["i2t_in_batch"])
    return terms, total


def dpt_losses(
    *,
    logit_scale: torch.Tensor | float,
    i2t_scores: torch.Tensor | None = None,
    t2i_scores: torch.Tensor | None = None,
    in_batch_scores: torch.Tensor | None = None,
    rec: Any = None,
    gold_boxes: GoldBoxes | None = None,
    ref_text_emb: torch.Tensor | None = None,
    weights: LossWeights | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 8: weighted L^match (Eqs. 3-4) + L^ground (Eqs. 5-7). Returns ``(total, terms)``.

    * ``i2t_scores`` / ``t2i_scores`` (B, K): hard-negative layout, positive in column 0 (see
      :mod:`dptune.losses.matching`); ``in_batch_scores`` (B, B) optional CLIP-style matrix.
    * ``rec``: the adapter output of the REC pass (anything with ``logits_p``, ``boxes``, ``obj_emb``),
      ``gold_boxes`` (B, 4) cxcywh, ``ref_text_emb`` (B, D) pooled text embedding of the expression.
    * ``logit_scale``: 1 / tau, the adapter's ``AdapterOutput.logit_scale``.

    ``terms`` holds detached unweighted scalars for logging: t2i, i2t, (t2i_in_batch, i2t_in_batch), match,
    prob, l1, giou, t2o, ground, total. Either part may be omitted, not both.
    """
    w = weights or LossWeights()
    if i2t_scores is None and t2i_scores is None and in_batch_scores is None and rec is None:
        raise ValueError("dpt_losses got neither matching scores nor a REC output; pass at least one")
    terms, total = _matching_terms(i2t_scores, t2i_scores, in_batch_scores, logit_scale, w)
    if terms:
        terms["match"] = total
    if rec is not None:
        if gold_boxes is None or ref_text_emb is None:
            raise ValueError("the REC loss needs gold_boxes (B, 4) and ref_text_emb (B, D) alongside rec")
        g = grounding_loss(
            rec.logits_p,
            rec.boxes,
            rec.obj_emb,
            gold_boxes,
            ref_text_emb,
            logit_scale,
            lambdas=(w.prob, w.l1, w.giou, w.t2o),
            cost_weights=(w.cost_prob, w.cost_l1, w.cost_giou),
            eos_coef=w.eos_coef,
        )
        terms.update(g)
        total = total + g["ground"]
    terms["total"] = total
    return total, {k: v.detach() for k, v in terms.items()}
