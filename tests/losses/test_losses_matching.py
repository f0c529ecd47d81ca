"""ITM losses (Eqs. 3-4) against hand-computed cross-entropies."""

import math

import pytest
import torch

from dptune.losses import image_to_text_loss, in_batch_matching_loss, text_to_image_loss


def test_hard_negative_layout_hand_computed():
    # row 0: logits 2 * [0.5, 0, -0.5] = [1, 0, -1] -> CE = log(e + 1 + 1/e) - 1; row 1: all equal -> log 3
    scores = torch.tensor([[0.5, 0.0, -0.5], [0.2, 0.2, 0.2]])
    want = ((math.log(math.e + 1 + math.exp(-1)) - 1) + math.log(3)) / 2
    assert text_to_image_loss(scores, 2.0).item() == pytest.approx(want, rel=1e-6)
    assert image_to_text_loss(scores, torch.tensor(2.0)).item() == pytest.approx(want, rel=1e-6)


def test_explicit_targets():
    scores = torch.tensor([[0.0, 1.0]])  # positive at column 1: CE = log(1 + e^-1)
    assert text_to_image_loss(scores, 1.0, torch.tensor([1])).item() == pytest.approx(math.log(1 + math.exp(-1)))


def test_in_batch_hand_computed():
    s = torch.tensor([[1.0, 0.0], [0.5, 0.0]])  # s[i, j] = s(z_i, y_j)
    t2i, i2t = in_batch_matching_loss(s, 1.0)
    # I->T rows: [1, 0] target 0 -> log(1 + e^-1); [0.5, 0] target 1 -> log(1 + e^0.5)
    assert i2t.item() == pytest.approx((math.log(1 + math.exp(-1)) + math.log(1 + math.exp(0.5))) / 2, rel=1e-6)
    # T->I columns: [1, 0.5] target 0 -> log(1 + e^-0.5); [0, 0] target 1 -> log 2
    assert t2i.item() == pytest.approx((math.log(1 + math.exp(-0.5)) + math.log(2)) / 2, rel=1e-6)


def test_learnable_scale_gets_gradient():
    scale = torch.tensor(3.0, requires_grad=True)
    text_to_image_loss(torch.tensor([[0.9, 0.1, 0.0]]), scale).backward()
    assert scale.grad is not None and scale.grad.item() < 0  # a sharper softmax lowers the loss here


@pytest.mark.parametrize("shape", [(4,), (4, 1), (2, 3, 3)])
def test_bad_score_shapes_raise(shape):
    with pytest.raises(ValueError, match="K >= 2"):
        image_to_text_loss(torch.zeros(shape), 1.0)


def test_in_batch_needs_square():
    with pytest.raises(ValueError, match="square"):
        in_batch_matching_loss(torch.zeros(2, 3), 1.0)
