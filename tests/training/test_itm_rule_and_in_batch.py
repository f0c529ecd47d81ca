"""One ITM accuracy rule for training validation and evaluation, and LossWeights.in_batch wired into the loss."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from dptune.adapter import DPTProbe
from dptune.data import collate_samples
from dptune.losses import LossWeights, in_batch_matching_loss, matching_credit
from dptune.shapesworld import ShapesWorldDataset
from dptune.training import validation
from dptune.training.objective import DPTObjective, prepare_inputs
from helpers import make_tiny_adapter


def test_matching_credit_splits_ties():
    scores = torch.tensor([[0.9, 0.1, 0.2], [0.5, 0.5, 0.1], [0.3, 0.3, 0.3], [0.1, 0.9, 0.0]])
    assert matching_credit(scores, [0, 0, 0, 0]).tolist() == pytest.approx([1.0, 0.5, 1 / 3, 0.0])


def test_validation_scores_itm_by_the_evaluation_rule(monkeypatch):
    """Planted score tables: validation's ITM numbers are the evaluation's credit (a tie is half a hit, not a
    hit as the old argmax rule gave)."""
    i2t = torch.tensor([[0.5, 0.5, 0.1], [0.9, 0.2, 0.3]])  # (B, 3) positive first
    t2i = torch.tensor([[0.2, 0.7, 0.1], [0.4, 0.4, 0.4]])
    rec = SimpleNamespace(logits_p=torch.tensor([[1.0, 0.0]] * 2), boxes=torch.tensor([[[.5, .5, .2, .2]] * 2] * 2))
    out = SimpleNamespace(select=lambda sl: rec)

    class Planted(torch.nn.Module):
        probe = SimpleNamespace(backbone=None)

        def outputs(self, inputs):
            return out, i2t, t2i, {}

    monkeypatch.setattr(validation, "prepare_inputs", lambda *a, **k: {"ref_box": torch.tensor([[.5, .5, .2, .2]] * 2)})
    m = validation.discriminative_metrics(Planted(), [{}], t=250)
    assert m["itm_i2t_hn"] == pytest.approx(matching_credit(i2t[:, :2], [0, 0]).mean().item()) == 0.75
    assert m["itm_i2t_all"] == pytest.approx(matching_credit(i2t, [0, 0]).mean().item()) == 0.75
    assert m["itm_t2i_all"] == pytest.approx((0 + 1 / 3) / 2)
    assert m["rec_p1"] == 1.0


def test_in_batch_weight_adds_the_clip_style_terms(tiny_backbone):
    """LossWeights.in_batch > 0 adds w * (T->I + I->T) of the in-batch similarity of the positive pass; 0 leaves
    the loss as it was. Catches a weight that is accepted but never used."""
    batch = collate_samples([ShapesWorldDataset("id", size=3, seed=0)[i] for i in range(3)])
    inputs = prepare_inputs(tiny_backbone, batch, torch.Generator().manual_seed(0), (0, 200))
    probe = DPTProbe(tiny_backbone, make_tiny_adapter())
    with torch.no_grad():
        base_total, base_terms = DPTObjective(probe, LossWeights())(inputs)
        total, terms = DPTObjective(probe, LossWeights(in_batch=2.0))(inputs)
        out, *_ = DPTObjective(probe).outputs(inputs)
    assert "t2i_in_batch" not in base_terms and {"t2i_in_batch", "i2t_in_batch"} <= set(terms)
    from dptune.adapter import max_cosine_matrix

    sim = max_cosine_matrix(out.match_emb[:3].float(), inputs["text_pooled"][0])  # (B, B)
    t2i, i2t = in_batch_matching_loss(sim, out.logit_scale)
    assert terms["t2i_in_batch"].item() == pytest.approx(t2i.item(), rel=1e-5)
    assert total.item() == pytest.approx(base_total.item() + 2.0 * (t2i + i2t).item(), rel=1e-5)
