"""The denoising contrast (extension): hand-computed values, scale invariance, gradient direction, errors."""

from __future__ import annotations

import math

import pytest
import torch

from dptune.losses.denoising import denoising_contrast_loss, per_sample_error


def test_per_sample_error_is_the_mse_of_each_sample():
    pred, target = torch.zeros(2, 1, 2, 2), torch.tensor([1.0, 2.0]).view(2, 1, 1, 1).expand(2, 1, 2, 2)
    assert per_sample_error(pred, target).tolist() == [1.0, 4.0]


def test_values_by_hand():
    e = torch.tensor([0.5])
    assert denoising_contrast_loss(e, e).item() == pytest.approx(math.log(2))  # a tie: logit 0
    # e_neg 10% above e_pos: logit = 0.1 * ... / (0.05 * mean) with mean = 0.525
    pos, neg = torch.tensor([0.5]), torch.tensor([0.55])
    logit = (0.55 - 0.5) / (0.05 * 0.525)
    assert denoising_contrast_loss(pos, neg).item() == pytest.approx(math.log1p(math.exp(-logit)), rel=1e-5)
    assert denoising_contrast_loss(neg, pos).item() == pytest.approx(math.log1p(math.exp(logit)), rel=1e-5)


def test_scale_free_and_saturating():
    pos, neg = torch.tensor([0.2, 0.3]), torch.tensor([0.25, 0.2])
    assert denoising_contrast_loss(pos, neg).item() == pytest.approx(denoising_contrast_loss(10 * pos, 10 * neg).item())
    assert denoising_contrast_loss(torch.tensor([0.1]), torch.tensor([1.0])).item() < 1e-6


def test_gradient_lowers_the_positive_error_and_raises_the_negative():
    pos, neg = torch.tensor([0.5], requires_grad=True), torch.tensor([0.5], requires_grad=True)
    denoising_contrast_loss(pos, neg).backward()
    assert pos.grad.item() > 0 > neg.grad.item()  # descent: pos goes down, neg goes up


def test_bad_input():
    with pytest.raises(ValueError, match="two \\(B,\\) error vectors"):
        denoising_contrast_loss(torch.zeros(2), torch.zeros(3))
    with pytest.raises(ValueError, match="tau must be > 0"):
        denoising_contrast_loss(torch.zeros(2), torch.zeros(2), tau=0)
