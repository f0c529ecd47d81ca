"""Referring-expression grounding (REC) losses, paper Eqs. 5-7 (MDETR/DETR style).

Inputs come from the N-M grounding queries of the adapter: ``logits_p`` (B, Q) grounding-probability
logits, ``boxes`` (B, Q, 4) normalised cxcywh, ``obj_emb`` (B, Q, D) semantic vectors o_j; gold boxes are
normalised cxcywh, either ``(B, 4)`` (one referred object per sample, the DPT data contract), ``(B, T, 4)``
or a list of ``(T_b, 4)`` tensors.

Choices (documented because the paper's notation leaves them open):

* p_j = sigmoid(logit_j). The matching cost (Eq. 5) uses -GIoU; 1 - GIoU differs by a constant and gives
  the same assignment. L1 is summed over the 4 coordinates (as DETR's ``cdist(p=1)``).
* The paper's probability term in Eq. 7 is ``-p_psi(i)``: it has no negatives, so every query could
  saturate at p = 1. We use a binary cross-entropy on the logits instead (matched query -> 1, the others ->
  0 down-weighted by ``eos_coef`` = 0.1, normalised by the weight sum). This is what makes the head
  trainable, and it is the binary analogue of the official code's soft-token cross-entropy with
  ``eos_coef`` 0.1 "no object" weight, so the loss values are comparable.
* Box losses are averaged over the number of gold boxes in the batch (as DETR): L1 = sum |b_hat - b| / n,
  GIoU = sum (1 - GIoU) / n.
* Eq. 6 uses the same learnable temperature tau as Eqs. 3-4 (the paper writes the same symbol; the
  official code uses a fixed 0.07 there -- pass ``logit_scale=1/0.07`` to reproduce that).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dptune.losses.boxes import cxcywh_to_xyxy, generalized_iou, pairwise_generalized_iou

GoldBoxes = torch.Tensor | Sequence[torch.Tensor]


@dataclass
class Assignment:
    """Matched (query, gold box) pairs over a batch, flattened: ``batch_idx[k]`` sample, ``query_idx[k]``
    grounding query (0-based among the N-M grounding queries), ``gold_idx[k]`` box within that sample."""

    batch_idx: torch.Tensor  # (n,) long
    query_idx: torch.Tensor  # (n,) long
    gold_idx: torch.Tensor  # (n,) long

    def __len__(self) -> int:
        return int(self.batch_idx.numel())


def split_gold_boxes(gold_boxes: GoldBoxes, batch_size: int) -> list[torch.Tensor]:
    """Normalise gold boxes to a list of ``(T_b, 4)`` tensors, one per sample, with a clear error."""
    if isinstance(gold_boxes, torch.Tensor):
        if gold_boxes.ndim == 2 and gold_boxes.shape[-1] == 4:
            gold_boxes = gold_boxes[:, None, :]  # (B, 1, 4): one referred object per sample
        if gold_boxes.ndim != 3 or gold_boxes.shape[-1] != 4:
            raise ValueError(
                f"gold boxes must be (B, 4), (B, T, 4) or a list of (T_b, 4) cxcywh tensors; got shape "
                f"{tuple(gold_boxes.shape)}"
            )
        gold_boxes = list(gold_boxes)
    boxes = list(gold_boxes)
    if len(boxes) != batch_size:
        raise ValueError(f"got gold boxes for {len(boxes)} samples but predictions for {batch_size}")
    for b, g in enumerate(boxes):
        if g.ndim != 2 or g.shape[-1] != 4 or g.shape[0] < 1:
            raise ValueError(f"gold boxes of sample {b} must be (T, 4) with T >= 1; got {tuple(g.shape)}")
    return boxes


def matching_cost(
    logits_p: torch.Tensor,
    boxes: torch.Tensor,
    gold: torch.Tensor,
    weights: tuple[float, float, float] = (1.0, 5.0, 2.0),
) -> torch.Tensor:
    """Eq. 5 cost matrix C[j, i] = -w0 p_j + w1 L1(b_hat_j, b_i) - w2 GIoU(b_hat_j, b_i).

    ``logits_p`` (Q,), ``boxes`` (Q, 4) and ``gold`` (T, 4) cxcywh -> (Q, T). Weights default to the
    paper's (1, 5, 2) (Appendix B.3.2).
    """
    w_p, w_l1, w_giou = weights
    prob = logits_p.sigmoid()[:, None]  # (Q, 1)
    l1 = torch.cdist(boxes, gold, p=1)  # (Q, T)
    giou = pairwise_generalized_iou(cxcywh_to_xyxy(boxes), cxcywh_to_xyxy(gold))  # (Q, T)
    return -w_p * prob + w_l1 * l1 - w_giou * giou


@torch.no_grad()
def match_queries(
    logits_p: torch.Tensor,
    boxes: torch.Tensor,
    gold_boxes: GoldBoxes,
    weights: tuple[float, float, float] = (1.0, 5.0, 2.0),
) -> Assignment:
    """Eq. 5 psi(i) for every gold box of every sample: argmin of the cost over the grounding queries for a
    single gold box, Hungarian assignment (scipy ``linear_sum_assignment``) when a sample has several."""
    from scipy.optimize import linear_sum_assignment

    bsz, num_q = logits_p.shape
    golds = split_gold_boxes(gold_boxes, bsz)
    b_idx, q_idx, g_idx = [], [], []
    for b, gold in enumerate(golds):
        if gold.shape[0] > num_q:
            raise ValueError(f"sample {b} has {gold.shape[0]} gold boxes but only {num_q} grounding queries")
        cost = matching_cost(logits_p[b].float(), boxes[b].float(), gold.to(boxes).float(), weights)  # (Q, T)
        if gold.shape[0] == 1:
            rows, cols = cost[:, 0].argmin().view(1).cpu(), torch.zeros(1, dtype=torch.long)
        else:
            r, c = linear_sum_assignment(cost.cpu().numpy())
            rows, cols = torch.as_tensor(r, dtype=torch.long), torch.as_tensor(c, dtype=torch.long)
        b_idx.append(torch.full_like(rows, b))
        q_idx.append(rows)
        g_idx.append(cols)
    dev = logits_p.device
    return Assignment(torch.cat(b_idx).to(dev), torch.cat(q_idx).to(dev), torch.cat(g_idx).to(dev))


def probability_loss(logits_p: torch.Tensor, assignment: Assignment, eos_coef: float = 0.1) -> torch.Tensor:
    """Eq. 7 lambda_0 term as a weighted BCE on logits (B, Q): matched query -> 1 (weight 1), the others
    -> 0 (weight ``eos_coef``); normalised by the sum of weights (as a weighted cross-entropy mean)."""
    target = torch.zeros_like(logits_p)  # (B, Q)
    target[assignment.batch_idx, assignment.query_idx] = 1.0
    weight = torch.where(target > 0, torch.ones_like(target), torch.full_like(target, eos_coef))
    bce = F.binary_cross_entropy_with_logits(logits_p, target, reduction="none")  # (B, Q)
    return (weight * bce).sum() / weight.sum()


def _matched_boxes(boxes: torch.Tensor, gold_boxes: GoldBoxes, a: Assignment):
    golds = split_gold_boxes(gold_boxes, boxes.shape[0])
    pred = boxes[a.batch_idx, a.query_idx]  # (n, 4)
    gold = torch.stack([golds[b][g] for b, g in zip(a.batch_idx.tolist(), a.gold_idx.tolist(), strict=True)])
    return pred, gold.to(pred)  # (n, 4), (n, 4)


def box_l1_loss(boxes: torch.Tensor, gold_boxes: GoldBoxes, assignment: Assignment) -> torch.Tensor:
    """Eq. 7 lambda_1 term: L1 between matched predicted and gold cxcywh boxes, per gold box."""
    pred, gold = _matched_boxes(boxes, gold_boxes, assignment)
    return (pred - gold).abs().sum() / max(len(assignment), 1)


def giou_loss(boxes: torch.Tensor, gold_boxes: GoldBoxes, assignment: Assignment) -> torch.Tensor:
    """Eq. 7 lambda_2 term: mean (1 - GIoU) of matched predicted and gold boxes."""
    pred, gold = _matched_boxes(boxes, gold_boxes, assignment)
    giou = generalized_iou(cxcywh_to_xyxy(pred), cxcywh_to_xyxy(gold))  # (n,)
    return (1.0 - giou).sum() / max(len(assignment), 1)


def text_to_object_loss(
    obj_emb: torch.Tensor,
    text_emb: torch.Tensor,
    assignment: Assignment,
    logit_scale: torch.Tensor | float,
) -> torch.Tensor:
    """Eq. 6, L^{T->O} = -log exp(cos(o_psi(i), CLIP(y'))/tau) / sum_j exp(cos(o_j, CLIP(y'))/tau).

    ``obj_emb`` (B, Q, D) object vectors, ``text_emb`` (B, D) the referring expression's text embedding;
    the softmax runs over the Q grounding queries of the sample, the target is the matched query.
    """
    if text_emb.ndim != 2 or text_emb.shape != (obj_emb.shape[0], obj_emb.shape[-1]):
        raise ValueError(
            f"text_emb must be (B, D) = {(obj_emb.shape[0], obj_emb.shape[-1])} to match obj_emb "
            f"{tuple(obj_emb.shape)}; got {tuple(text_emb.shape)}"
        )
    cos = torch.einsum("bqd,bd->bq", F.normalize(obj_emb, dim=-1), F.normalize(text_emb, dim=-1))  # (B, Q)
    logits = logit_scale * cos[assignment.batch_idx]  # (n, Q): one row per matched gold box
    return F.cross_entropy(logits, assignment.query_idx)


def grounding_loss(
    logits_p: torch.Tensor,
    boxes: torch.Tensor,
    obj_emb: torch.Tensor,
    gold_boxes: GoldBoxes,
    text_emb: torch.Tensor,
    logit_scale: torch.Tensor | float,
    lambdas: tuple[float, float, float, float] = (1.0, 5.0, 2.0, 1.0),
    cost_weights: tuple[float, float, float] = (1.0, 5.0, 2.0),
    eos_coef: float = 0.1,
) -> dict[str, torch.Tensor]:
    """Eq. 7, L^ground = l0 L_p + l1 L1 + l2 (1 - GIoU) + l3 L^{T->O}, after Eq. 5 matching.

    Returns the named (unweighted) terms plus ``"ground"``, the weighted sum.
    """
    a = match_queries(logits_p, boxes, gold_boxes, cost_weights)
    terms = {
        "prob": probability_loss(logits_p, a, eos_coef),
        "l1": box_l1_loss(boxes, gold_boxes, a),
        "giou": giou_loss(boxes, gold_boxes, a),
        "t2o": text_to_object_loss(obj_emb, text_emb, a, logit_scale),
    }
    terms["ground"] = sum(w * v for w, v in zip(lambdas, terms.values(), strict=True))
    return terms
