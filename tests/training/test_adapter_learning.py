"""The real ``DPTObjective``: which (image, caption) pair each pass scores, and that it learns a fixed batch.

The wiring test plants a probe whose outputs say which image and which caption it was given, so a swapped
pass, a wrong column order or a mis-concatenated full/truncated U-Net split shows up as a wrong label.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dptune.adapter import AdapterConfig, AdapterOutput, DiscriminativeAdapter, DPTProbe
from dptune.data import collate_samples
from dptune.losses import cxcywh_to_xyxy, iou
from dptune.shapesworld import ShapesWorldDataset
from dptune.training.objective import DPTObjective, prepare_inputs

B = 3  # samples per batch
POS, HN, RAND, REF = 0, 1, 2, 3  # index of the image / caption kind in inputs["latents"] / inputs["text_hidden"]
BASE = 40  # labels and timesteps below are < 40


def label(kind: int, sample: int) -> int:
    """A unique small integer per (kind, sample): planted in latents and text, read back from the scores."""
    return 10 * kind + sample + 1


def planted_inputs(backbone) -> dict:
    """Noise-free inputs whose image ``(kind, b)`` is the constant ``label(kind, b)`` and whose caption
    ``(kind, b)`` has ``label(kind, b)`` in its first hidden/pooled entry. Timesteps differ per sample."""
    h, lat = 4, backbone.unet.config.in_channels
    latents = torch.zeros(4, B, lat, h, h)
    hidden, pooled = torch.zeros(4, B, 5, 32), torch.zeros(4, B, 32)  # (4, B, L, D), (4, B, Dp)
    for kind in range(4):
        for b in range(B):
            latents[kind, b] = label(kind, b)
            hidden[kind, b, :, 0] = label(kind, b)
            pooled[kind, b, 0] = label(kind, b)
    return {"latents": latents, "noise": torch.zeros(B, lat, h, h), "t": torch.tensor([0, 7, 19]),
            "t_rec": torch.tensor([3, 11, 23]), "ref_box": torch.full((B, 4), 0.5), "texts": [""] * 4 * B,
            "text_hidden": hidden, "text_pooled": pooled}


class PlantedAdapter(nn.Module):
    def match_score(self, match_emb: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """(N, 1, 3) [image, conditioning caption, t] x (N, Dp) scored caption -> (N,): the four numbers as
        base-40 digits (exact in float32, whose integers are exact up to 2**24 > 40**4)."""
        img, cond, t = match_emb[:, 0].unbind(-1)
        return ((img * BASE + cond) * BASE + text[:, 0]) * BASE + t


class PlantedProbe(nn.Module):
    """Reads back the image label (undoing add_noise's sqrt(abar_t) scale), the conditioning caption label and
    the timestep of every row it is given; records which rows went through the full U-Net."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone, self.adapter = backbone, PlantedAdapter()
        self.anchor = nn.Parameter(torch.zeros(()))  # DPTObjective expects something trainable
        self.full_rows: list[tuple[int, int]] = []

    def forward(self, z_t, t, text):  # (N, 4, h, w), (N,), (N, L, D) -> AdapterOutput
        abar = self.backbone.noise_scheduler.alphas_cumprod[t].float()  # (N,)
        img = (z_t[:, 0, 0, 0].float() / abar.sqrt()).round()
        n = len(t)
        match = torch.stack([img, text[:, 0, 0].float(), t.float()], dim=-1)[:, None] + self.anchor  # (N, 1, 3)
        return AdapterOutput(queries=torch.zeros(n, 2, 4), match_emb=match, logits_p=torch.zeros(n, 1),
                             boxes=torch.full((n, 1, 4), 0.5), obj_emb=torch.zeros(n, 1, 32),
                             logit_scale=torch.tensor(1.0))

    def forward_with_noise(self, z_t, t, text):
        out = self(z_t, t, text)
        self.full_rows += [(int(i), int(c)) for i, c, _ in out.match_emb[:, 0].tolist()]
        return out, torch.zeros_like(z_t)


def decode(score: torch.Tensor) -> tuple[int, int, int, int]:
    """Inverse of PlantedAdapter.match_score: (image, conditioning caption, scored caption, t)."""
    v = int(round(score.item()))
    return v // BASE**3, v // BASE**2 % BASE, v // BASE % BASE, v % BASE


@pytest.mark.parametrize("weights", [{}, {"mse_weight": 1.0}, {"mse_weight": 1.0, "contrast_weight": 1.0}],
                         ids=["truncated", "mse", "mse+contrast"])
def test_each_itm_column_scores_the_paper_pair(tiny_backbone, weights):
    """Catches a swapped pass, a caption scored against the wrong image, columns in the wrong order, passes
    that do not share the sample's timestep, and the full-U-Net rows (MSE, contrast) concatenated out of
    order. Deliberate break seen failing: passes 3 and 4 of ``DPTObjective._passes`` swapped."""
    probe = PlantedProbe(tiny_backbone)
    objective = DPTObjective(probe, **weights)
    inputs = planted_inputs(tiny_backbone)
    out, i2t, t2i, denoise = objective.outputs(inputs)
    assert i2t.shape == t2i.shape == (B, 3)
    for b in range(B):
        t = int(inputs["t"][b])
        # I->T: the positive image conditioned on and scored against each caption (Eq. 4)
        assert [decode(s) for s in i2t[b]] == [(label(POS, b), label(k, b), label(k, b), t) for k in (POS, HN, RAND)]
        # T->I: the positive caption against the positive, hard-negative and random image (Eq. 3)
        assert [decode(s) for s in t2i[b]] == [(label(k, b), label(POS, b), label(POS, b), t) for k in (POS, HN, RAND)]
        # REC pass: the REC image under its referring expression, at its own timestep
        img, cond, t_rec = out.match_emb[5 * B + b, 0].tolist()
        assert (img, cond, t_rec) == (label(REF, b), label(REF, b), int(inputs["t_rec"][b]))
    full = [(label(POS, b), label(POS, b)) for b in range(B)]
    if "contrast_weight" in weights:
        full += [(label(POS, b), label(HN, b)) for b in range(B)]  # same latent under the hard-negative caption
    assert probe.full_rows == (full if weights else [])
    assert set(denoise) == {k.removesuffix("_weight") for k in weights}


def test_dpt_objective_learns_a_fixed_batch(tiny_backbone):
    """LEARNING CHECK on the real objective (tiny random SD, real adapter): 50 AdamW steps on one batch drop the
    total loss to a quarter, every positive wins both ITM directions and every REC box overlaps its target.
    Catches a loss that cannot decrease (detached graph, wrong targets) and an adapter that learns one task only.
    """
    batch = collate_samples([ShapesWorldDataset("id", size=4, seed=0)[i] for i in range(4)])
    inputs = prepare_inputs(tiny_backbone, batch, torch.Generator().manual_seed(0), (0, 200))
    torch.manual_seed(0)
    adapter = DiscriminativeAdapter(AdapterConfig(in_channels=32, text_dim=32, d_model=32, heads=4, ffn=64,
                                                  dropout=0.0, num_queries=8, num_match_queries=2))
    objective = DPTObjective(DPTProbe(tiny_backbone, adapter))
    opt = torch.optim.AdamW(adapter.parameters(), lr=5e-3)
    first = None
    for _ in range(50):
        total, terms = objective(inputs)
        first = terms if first is None else first
        opt.zero_grad()
        total.backward()
        torch.nn.utils.clip_grad_norm_(adapter.parameters(), 1.0)
        opt.step()
    with torch.no_grad():
        _, last = objective(inputs)
        out, i2t, t2i, _ = objective.outputs(inputs)
    assert last["total"] <= 0.25 * first["total"]
    assert last["match"] < 0.5 * first["match"] and last["l1"] < 0.5 * first["l1"]
    assert (i2t.argmax(1) == 0).all() and (t2i.argmax(1) == 0).all()
    rec = out.select(slice(5 * 4, None))  # the REC pass
    top = rec.boxes[torch.arange(4), rec.logits_p.argmax(1)]  # (4, 4) most probable query's box
    assert (iou(cxcywh_to_xyxy(top), cxcywh_to_xyxy(inputs["ref_box"])) >= 0.5).all()
