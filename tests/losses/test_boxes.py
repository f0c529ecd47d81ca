"""Box conversions, IoU and GIoU against hand-computed values, including degenerate boxes."""

import pytest
import torch

from dptune.losses.boxes import (
    box_area,
    cxcywh_to_xyxy,
    generalized_iou,
    iou,
    pairwise_generalized_iou,
    pairwise_iou,
    xyxy_to_cxcywh,
)


def t(*v):
    return torch.tensor(v, dtype=torch.float32)


def test_conversions_hand_computed_and_round_trip():
    assert torch.allclose(cxcywh_to_xyxy(t(0.5, 0.5, 0.2, 0.4)), t(0.4, 0.3, 0.6, 0.7))
    assert torch.allclose(xyxy_to_cxcywh(t(0.1, 0.2, 0.5, 0.3)), t(0.3, 0.25, 0.4, 0.1))
    boxes = torch.rand(5, 3, 4)
    assert torch.allclose(xyxy_to_cxcywh(cxcywh_to_xyxy(boxes)), boxes, atol=1e-6)


@pytest.mark.parametrize(
    "a, b, want_iou, want_giou",
    [
        ((0, 0, 2, 2), (1, 1, 3, 3), 1 / 7, 1 / 7 - 2 / 9),  # partial overlap: I=1, U=7, C=9
        ((0, 0, 1, 1), (2, 0, 3, 1), 0.0, -1 / 3),  # disjoint: U=2, C=3
        ((0, 0, 4, 4), (1, 1, 2, 2), 1 / 16, 1 / 16),  # contained: C = U
        ((0.2, 0.2, 0.6, 0.5), (0.2, 0.2, 0.6, 0.5), 1.0, 1.0),  # identical
        ((1, 1, 1, 1), (0, 0, 2, 2), 0.0, 0.0),  # zero-area point inside a box: U = C = 4
        ((0, 0, 0, 2), (0, 0, 2, 2), 0.0, 0.0),  # zero-width line on the box edge
        ((0, 0, 0, 0), (1, 1, 1, 1), 0.0, -1.0),  # two points: U = 0, C = 1
        ((1, 1, 1, 1), (1, 1, 1, 1), 0.0, 0.0),  # identical points: U = C = 0 -> defined as 0, no NaN
    ],
)
def test_iou_giou_hand_computed(a, b, want_iou, want_giou):
    a, b = t(*a), t(*b)
    assert iou(a, b).item() == pytest.approx(want_iou, abs=1e-6)
    assert generalized_iou(a, b).item() == pytest.approx(want_giou, abs=1e-6)
    assert generalized_iou(b, a).item() == pytest.approx(want_giou, abs=1e-6)  # symmetric


def test_inverted_box_has_zero_area():
    assert box_area(t(2, 2, 1, 1)).item() == 0.0
    assert box_area(t(0, 0, 2, 3)).item() == 6.0


def test_pairwise_matches_elementwise():
    a = cxcywh_to_xyxy(torch.rand(4, 4))
    b = cxcywh_to_xyxy(torch.rand(3, 4))
    g, i = pairwise_generalized_iou(a, b), pairwise_iou(a, b)
    assert g.shape == (4, 3) and i.shape == (4, 3)
    assert torch.allclose(g[2, 1], generalized_iou(a[2], b[1]))
    assert torch.allclose(i[3, 0], iou(a[3], b[0]))
    assert torch.all(g <= i + 1e-6) and torch.all(g >= -1 - 1e-6)


def test_degenerate_predictions_give_finite_gradients():
    pred = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.3, 0.3, 0.0, 0.2], [0.5, 0.5, 0.2, 0.2]], requires_grad=True)
    gold = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.7, 0.7, 0.1, 0.1], [0.5, 0.5, 0.2, 0.2]])
    loss = (1 - generalized_iou(cxcywh_to_xyxy(pred), cxcywh_to_xyxy(gold))).sum()
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(pred.grad).all()
