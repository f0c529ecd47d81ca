"""REC matching and losses (Eqs. 5-7) and the combined objective, against hand-computed values."""

import itertools
import math

import pytest
import torch

from dptune.losses import (
    LossWeights,
    box_l1_loss,
    dpt_losses,
    giou_loss,
    grounding_loss,
    match_queries,
    matching_cost,
    probability_loss,
    text_to_object_loss,
)
from dptune.losses.grounding import Assignment

GOLD = torch.tensor([0.6, 0.5, 0.2, 0.2])
SHIFTED = torch.tensor([0.5, 0.5, 0.2, 0.2])  # L1 = 0.1, IoU = GIoU = 1/3 against GOLD


def one(b, q):
    return Assignment(torch.tensor([b]), torch.tensor([q]), torch.tensor([0]))


def test_matching_cost_hand_computed():
    cost = matching_cost(torch.zeros(2), torch.stack([GOLD, SHIFTED]), GOLD[None])
    assert cost.shape == (2, 1)
    assert cost[0, 0].item() == pytest.approx(-0.5 - 2.0, abs=1e-5)  # -p + 0 - 2 * 1
    assert cost[1, 0].item() == pytest.approx(-0.5 + 5 * 0.1 - 2 / 3, abs=1e-5)


def test_matching_picks_planted_query():
    torch.manual_seed(0)
    logits, boxes = torch.full((3, 20), -3.0), torch.rand(3, 20, 4) * 0.5 + 0.1
    gold = torch.rand(3, 4) * 0.4 + 0.3
    planted = [7, 0, 19]
    for b, q in enumerate(planted):
        boxes[b, q], logits[b, q] = gold[b], 5.0
    a = match_queries(logits, boxes, gold)
    assert a.batch_idx.tolist() == [0, 1, 2] and a.query_idx.tolist() == planted


def test_hungarian_is_optimal_one_to_one():
    torch.manual_seed(1)
    logits, boxes = torch.randn(1, 5), torch.rand(1, 5, 4) * 0.5 + 0.2
    gold = torch.rand(1, 3, 4) * 0.5 + 0.2
    a = match_queries(logits, boxes, gold)
    cost = matching_cost(logits[0], boxes[0], gold[0])  # (5, 3)
    got = sum(cost[q, g].item() for q, g in zip(a.query_idx.tolist(), a.gold_idx.tolist(), strict=True))
    best = min(sum(cost[q, g].item() for g, q in enumerate(p)) for p in itertools.permutations(range(5), 3))
    assert len(set(a.query_idx.tolist())) == 3 and got == pytest.approx(best, abs=1e-5)


def test_probability_loss_hand_computed():
    logits = torch.tensor([[0.0, math.log(3), -math.log(3)]])
    # q0: target 0, log 2, weight .1; q1: target 1, -log(3/4), weight 1; q2: target 0, -log(3/4), weight .1
    want = (0.1 * math.log(2) + math.log(4 / 3) + 0.1 * math.log(4 / 3)) / 1.2
    assert probability_loss(logits, one(0, 1), eos_coef=0.1).item() == pytest.approx(want, rel=1e-6)


def test_box_losses_hand_computed():
    boxes = torch.stack([GOLD, SHIFTED])[None]  # (1, 2, 4)
    gold = torch.tensor([[0.6, 0.5, 0.2, 0.4]])
    assert box_l1_loss(boxes, gold, one(0, 1)).item() == pytest.approx(0.1 + 0.2, abs=1e-6)
    assert giou_loss(boxes, GOLD[None], one(0, 1)).item() == pytest.approx(2 / 3, abs=1e-6)
    assert giou_loss(boxes, GOLD[None], one(0, 0)).item() == pytest.approx(0.0, abs=1e-6)


def test_text_to_object_hand_computed():
    obj = torch.tensor([[[3.0, 0.0], [0.0, 0.5], [-1.0, 0.0]]])  # cos with (1, 0): 1, 0, -1
    text = torch.tensor([[2.0, 0.0]])
    want = math.log(math.e + 1 + math.exp(-1))  # target = query 1 (cos 0)
    assert text_to_object_loss(obj, text, one(0, 1), 1.0).item() == pytest.approx(want, rel=1e-6)
    with pytest.raises(ValueError, match="text_emb must be"):
        text_to_object_loss(obj, torch.zeros(1, 3), one(0, 1), 1.0)


def test_grounding_loss_is_weighted_sum():
    torch.manual_seed(2)
    logits, boxes, obj = torch.randn(2, 6), torch.rand(2, 6, 4) * 0.5 + 0.2, torch.randn(2, 6, 8)
    terms = grounding_loss(logits, boxes, obj, torch.rand(2, 4) * 0.5 + 0.2, torch.randn(2, 8), 10.0)
    want = terms["prob"] + 5 * terms["l1"] + 2 * terms["giou"] + terms["t2o"]
    assert terms["ground"].item() == pytest.approx(want.item(), rel=1e-6)


def test_gold_box_shape_errors():
    with pytest.raises(ValueError, match="gold boxes"):
        match_queries(torch.zeros(2, 4), torch.rand(2, 4, 4), torch.rand(2, 3))
    with pytest.raises(ValueError, match="for 3 samples but predictions for 2"):
        match_queries(torch.zeros(2, 4), torch.rand(2, 4, 4), torch.rand(3, 4))


class _Rec:
    def __init__(self, logits_p, boxes, obj_emb):
        self.logits_p, self.boxes, self.obj_emb = logits_p, boxes, obj_emb


def test_dpt_losses_combines_terms():
    torch.manual_seed(3)
    i2t, t2i = torch.rand(4, 3) * 2 - 1, torch.rand(4, 3) * 2 - 1
    rec = _Rec(torch.randn(4, 5), torch.rand(4, 5, 4) * 0.5 + 0.2, torch.randn(4, 5, 8))
    gold, text = torch.rand(4, 4) * 0.5 + 0.2, torch.randn(4, 8)
    total, terms = dpt_losses(
        logit_scale=14.0, i2t_scores=i2t, t2i_scores=t2i, rec=rec, gold_boxes=gold, ref_text_emb=text
    )
    assert terms["match"].item() == pytest.approx((terms["t2i"] + terms["i2t"]).item(), rel=1e-6)
    assert total.item() == pytest.approx((terms["match"] + terms["ground"]).item(), rel=1e-6)
    assert set(terms) >= {"t2i", "i2t", "prob", "l1", "giou", "t2o", "ground", "total"}
    total_ib, terms_ib = dpt_losses(
        logit_scale=14.0, t2i_scores=t2i, in_batch_scores=torch.eye(4), weights=LossWeights(t2i=0, in_batch=2)
    )
    ib = terms_ib["t2i_in_batch"] + terms_ib["i2t_in_batch"]
    assert total_ib.item() == pytest.approx(2 * ib.item(), rel=1e-6)


def test_dpt_losses_input_errors():
    with pytest.raises(ValueError, match="neither"):
        dpt_losses(logit_scale=1.0)
    with pytest.raises(ValueError, match="gold_boxes"):
        dpt_losses(logit_scale=1.0, rec=_Rec(None, None, None))
    with pytest.raises(ValueError, match="LossWeights.l1"):
        LossWeights(l1=-1)
