"""Grounded self-correction (extension): relation parsing, the REC-box hinge and its use in sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dptune.evaluation.methods import parse_method
from dptune.sampling import SelfCorrectionConfig, SelfCorrector
from dptune.sampling.grounded import (
    GroundingTargets,
    RelationTarget,
    clean_estimate,
    parse_relation,
    signed_offset,
)
from test_sampling import dpt  # noqa: F401  (fixture: tiny DPTPipeline with a random adapter)

RELATION = "a red circle to the left of a blue square"
PLAIN = "a red circle and a green triangle"


@pytest.mark.parametrize(("prompt", "want"), [
    (RELATION, RelationTarget("the red circle", "left", "the blue square")),
    ("A cat on top of a car.", RelationTarget("the cat", "above", "the car")),
    ("a balloon on the right of a bicycle", RelationTarget("the balloon", "right", "the bicycle")),
    ("two dogs below the tree", RelationTarget("the two dogs", "below", "the tree")),
    ("a red circle above a blue square", RelationTarget("the red circle", "above", "the blue square")),
    ("a lamp under a table", RelationTarget("the lamp", "below", "the table")),
])
def test_parse_relation_finds_subject_relation_and_anchor(prompt, want):
    assert parse_relation(prompt) == want


@pytest.mark.parametrize("prompt", ["a red circle", PLAIN, "three blue squares", "a leftover pizza on a plate",
                                    "left of a tree"])
def test_prompts_without_a_relation_are_not_parsed(prompt):
    assert parse_relation(prompt) is None


def test_signed_offset_is_positive_exactly_when_the_relation_holds():
    subject = torch.tensor([[0.2, 0.5], [0.2, 0.5], [0.5, 0.2], [0.5, 0.2]])  # (R, 2) cx, cy
    anchor = torch.tensor([[0.7, 0.5], [0.7, 0.5], [0.5, 0.9], [0.5, 0.9]])
    got = signed_offset(subject, anchor, ["left", "right", "above", "below"])
    assert torch.allclose(got, torch.tensor([0.5, -0.5, 0.7, -0.7]))  # y grows downwards: 0.2 is above 0.9


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction"])
def test_clean_estimate_inverts_the_forward_process(kind):
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    abar = torch.tensor(0.3)
    x = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    out = eps if kind == "epsilon" else abar.sqrt() * eps - (1 - abar).sqrt() * x0
    got_x0, got_eps = clean_estimate(x, out, abar, kind)
    assert torch.allclose(got_x0, x0, atol=1e-5) and torch.allclose(got_eps, eps, atol=1e-5)
    with pytest.raises(ValueError, match="prediction_type"):
        clean_estimate(x, out, abar, "sample")


def test_grounded_step_raises_the_relation_objective_and_leaves_other_prompts_alone(dpt):  # noqa: F811
    probe = dpt.probe
    prompts = [PLAIN, RELATION]
    text = probe.encode_text(prompts)
    # margin 1: the hinge is active wherever the random REC head puts the boxes, so the step must move it
    cfg = SelfCorrectionConfig(eta=1e-2, window=(0.0, 1.0), normalize_grad=True, objective="grounded",
                               relation_margin=1.0)
    corrector = SelfCorrector(probe, cfg, GroundingTargets.build(probe, prompts))
    t = torch.tensor(600)
    z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))  # (B, 4, h, w)
    with torch.no_grad():
        before = corrector.score(z, t, text)  # (B,)
        z_hat = corrector.correct(z, t, text, step_index=0)
        after = corrector.score(z_hat, t, text)
    assert before[0] == 0 and after[0] == 0  # no relation in the first prompt: no objective ...
    assert torch.equal(z_hat[0], z[0])  # ... and no move
    assert before[1] < 0 and after[1] > before[1]
    assert (z_hat[1] - z[1]).abs().max() > 0


def test_grounded_correction_in_the_pipeline_changes_only_relation_prompts(dpt):  # noqa: F811
    prompts, seeds = [PLAIN, RELATION], [3, 11]
    cfg = SelfCorrectionConfig(eta=0.5, window=(0.0, 1.0), normalize_grad=True, objective="grounded",
                               relation_margin=1.0)
    plain = dpt(prompts, seeds=seeds, num_inference_steps=4, progress=False)
    grounded = dpt(prompts, seeds=seeds, num_inference_steps=4, correction=cfg, progress=False)
    assert np.array_equal(grounded[0], plain[0])
    assert not np.array_equal(grounded[1], plain[1])
    alone = dpt([PLAIN], seeds=[3], num_inference_steps=4, progress=False)  # batch size changes float kernels
    only_plain = dpt([PLAIN], seeds=[3], num_inference_steps=4, correction=cfg, progress=False)
    assert np.array_equal(only_plain[0], alone[0])  # a batch without relations is not corrected at all


def test_grounded_objective_needs_targets_and_valid_options(dpt):  # noqa: F811
    with pytest.raises(ValueError, match="GroundingTargets"):
        SelfCorrector(dpt.probe, SelfCorrectionConfig(objective="grounded"))
    with pytest.raises(ValueError, match="objective must be one of"):
        SelfCorrectionConfig(objective="boxes")
    with pytest.raises(ValueError, match="ground_t"):
        SelfCorrectionConfig(objective="grounded", ground_t=1000)
    with pytest.raises(ValueError, match="relation_margin"):
        SelfCorrectionConfig(objective="grounded", relation_margin=0)


def test_compare_spec_takes_the_grounded_options():
    spec = parse_method("gsc=adapter=A,lora=L,eta=0.1,objective=grounded,ground_t=150,normalize_grad=true")
    assert spec.sc == {"objective": "grounded", "ground_t": 150, "normalize_grad": True}
    assert SelfCorrectionConfig(eta=spec.eta, **spec.sc).objective == "grounded"
