"""DPT's objectives and methods: relation parsing, the REC-box hinge (grounded extension), and both objectives
in the guided sampler."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dptune.methods import parse_method
from dptune.methods.dpt import GroundedRelation, GroundedSCConfig, MatchScore
from dptune.methods.dpt.grounded import (
    GroundingTargets,
    RelationTarget,
    clean_estimate,
    parse_relation,
    relation_objective,
    signed_offset,
)
from dptune.sampling import GuidanceCond, SelfCorrectionConfig, SelfCorrector

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


class PlantedProbe:
    """A probe whose REC head puts 'the subject' (phrase context filled with 0) at ``subject`` and 'the anchor'
    (context filled with 1) at ``anchor``, whatever the latent: the hinge's value is known by hand."""

    def __init__(self, subject, anchor):
        sched = SimpleNamespace(alphas_cumprod=torch.linspace(0.99, 0.01, 1000),
                                config=SimpleNamespace(prediction_type="epsilon"))
        self.backbone = SimpleNamespace(noise_scheduler=sched, predict_noise=lambda x, t, h: torch.zeros_like(x))
        self.unet = SimpleNamespace(dtype=torch.float32)
        self.centres = {0: subject, 1: anchor}

    def __call__(self, x, t, hidden):  # (2R, ...) subject_0, anchor_0, ...
        which = hidden.mean(dim=(1, 2)).round().long().tolist()  # (2R,) 0 = subject, 1 = anchor
        boxes = torch.tensor([[[*self.centres[w], 0.1, 0.1]] * 3 for w in which])  # (2R, Q=3, 4) cxcywh
        logits = torch.tensor([[9.0, -9.0, -9.0]] * len(which))  # query 0 carries the prediction
        return SimpleNamespace(boxes=boxes + 0 * x.sum(), logits_p=logits)


@pytest.mark.parametrize(("relation", "want"), [("left", -0.45), ("right", -0.05), ("above", -0.25),
                                                ("below", -0.25)])
def test_grounded_objective_equals_the_hinge_computed_by_hand(relation, want):
    """Catches a subject/anchor swap, a wrong axis sign or a wrong margin: subject box centre (0.6, 0.5),
    anchor (0.4, 0.5), margin 0.25 -> left: -relu(0.25 - (0.4 - 0.6)) = -0.45, right: -relu(0.25 - 0.2)."""
    probe = PlantedProbe((0.6, 0.5), (0.4, 0.5))
    L, D = 4, 8
    targets = GroundingTargets(samples=torch.tensor([1]), relations=[relation],
                               hidden=torch.cat([torch.zeros(1, L, D), torch.ones(1, L, D)]), pooled=torch.zeros(2, 3))
    x = torch.randn(2, 4, 8, 8)
    got = relation_objective(probe, x, torch.tensor(500), torch.zeros(2, L, D), targets, ground_t=100, margin=0.25)
    assert got[0] == 0  # sample 0 states no relation
    assert got[1].item() == pytest.approx(want, abs=1e-5)


def test_grounded_step_raises_the_relation_objective_and_leaves_other_prompts_alone(tiny_probe):
    prompts = [PLAIN, RELATION]
    # margin 1: the hinge is active wherever the random REC head puts the boxes, so the step must move it
    objective = GroundedRelation(tiny_probe, margin=1.0)
    cond = objective.prepare(GuidanceCond(prompts, tiny_probe.encode_text(prompts).hidden))
    corrector = SelfCorrector(objective, SelfCorrectionConfig(eta=1e-2, window=(0.0, 1.0), normalize_grad=True))
    t = torch.tensor(600)
    z = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))  # (B, 4, h, w)
    with torch.no_grad():
        before = corrector.score(z, t, cond)  # (B,)
        z_hat = corrector.correct(z, t, cond, step_index=0)
        after = corrector.score(z_hat, t, cond)
    assert before[0] == 0 and after[0] == 0  # no relation in the first prompt: no objective ...
    assert torch.equal(z_hat[0], z[0])  # ... and no move
    assert before[1] < 0 and after[1] > before[1]


def test_grounded_correction_in_the_pipeline_changes_only_relation_prompts(guided, tiny_probe):
    prompts, seeds = [PLAIN, RELATION], [3, 11]
    cfg = SelfCorrectionConfig(eta=0.5, window=(0.0, 1.0), normalize_grad=True)
    objective = GroundedRelation(tiny_probe, margin=1.0)
    kw = dict(num_inference_steps=4, progress=False)
    plain = guided(prompts, seeds=seeds, **kw)
    grounded = guided(prompts, seeds=seeds, correction=cfg, objective=objective, **kw)
    assert np.array_equal(grounded[0], plain[0])
    assert not np.array_equal(grounded[1], plain[1])
    alone = guided([PLAIN], seeds=[3], **kw)  # batch size changes float kernels
    only_plain = guided([PLAIN], seeds=[3], correction=cfg, objective=objective, **kw)
    assert np.array_equal(only_plain[0], alone[0])  # a batch without relations is not corrected at all


def test_match_score_objective_prepares_the_pooled_text(tiny_probe):
    cond = MatchScore(tiny_probe).prepare(GuidanceCond([RELATION], tiny_probe.encode_text([RELATION]).hidden))
    s = MatchScore(tiny_probe).score(torch.randn(1, 4, 8, 8), torch.tensor(400), cond)
    assert s.shape == (1,) and -1 <= s.item() <= 1


def test_grounded_method_options_and_validation():
    run = parse_method("dpt+gsc:ground_t=150,relation_margin=0.5", weights={"adapter": "A", "lora": "L"})
    assert isinstance(run.config, GroundedSCConfig)
    assert (run.config.ground_t, run.config.relation_margin, run.config.eta, run.config.normalize_grad) == (
        150, 0.5, 0.1, True)
    assert (run.config.adapter, run.config.lora) == ("A", "L")
    with pytest.raises(ValueError, match="ground_t"):
        GroundedSCConfig(ground_t=1000)
    with pytest.raises(ValueError, match="relation_margin"):
        parse_method("dpt+gsc:relation_margin=0")
    with pytest.raises(ValueError, match="eta"):
        parse_method("dpt+sc:eta=-1")
