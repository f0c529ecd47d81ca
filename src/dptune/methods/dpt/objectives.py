"""DPT's two guidance objectives, for the self-correcting sampler (:mod:`dptune.sampling`).

* :class:`MatchScore` -- the paper's s(z_t, y) (Sec. 3.1, climbed by Eq. 9): the best cosine between the
  adapter's matching queries and the pooled CLIP text embedding, read from a truncated U-Net pass conditioned
  on y (as in training).
* :class:`GroundedRelation` -- an extension, not the paper: a hinge on where the adapter's REC head puts the
  two objects of a prompt that states a spatial relation (:mod:`dptune.methods.dpt.grounded`).
"""

from __future__ import annotations

import torch

from dptune.adapter import DPTProbe
from dptune.methods.dpt.grounded import GroundingTargets, relation_objective
from dptune.sampling.guidance import GuidanceCond, eval_mode


class MatchScore:
    """s(z_t, y) of paper Sec. 3.1 -> (B,)."""

    def __init__(self, probe: DPTProbe) -> None:
        self.probe = probe

    def prepare(self, cond: GuidanceCond) -> GuidanceCond:
        cond.extra["pooled"] = self.probe.encode_text(cond.prompts).pooled  # (B, Dp) CLIP(y)
        return cond

    def score(self, x: torch.Tensor, t: torch.Tensor, cond: GuidanceCond) -> torch.Tensor:
        unet, adapter = self.probe.unet, self.probe.adapter
        feats = self.probe.features(x.to(unet.dtype), t, cond.hidden.to(unet.dtype))  # (B, Cf, hf, wf)
        with eval_mode(adapter):  # dropout off while scoring
            out = adapter(feats.to(adapter.input_proj.weight.dtype), t)
        return adapter.match_score(out.match_emb.float(), cond.extra["pooled"].float())  # (B,)


class GroundedRelation:
    """-relu(margin - offset of the REC boxes along the stated relation) -> (B,), 0 for other prompts."""

    def __init__(self, probe: DPTProbe, ground_t: int = 100, margin: float = 0.25) -> None:
        self.probe, self.ground_t, self.margin = probe, ground_t, margin

    def prepare(self, cond: GuidanceCond) -> GuidanceCond | None:
        targets = GroundingTargets.build(self.probe, cond.prompts)  # relation prompts of this batch
        if len(targets) == 0:
            return None  # nothing to ground: the batch is sampled unguided
        cond.extra["targets"] = targets
        return cond

    def score(self, x: torch.Tensor, t: torch.Tensor, cond: GuidanceCond) -> torch.Tensor:
        with eval_mode(self.probe.adapter):
            return relation_objective(self.probe, x, t, cond.hidden, cond.extra["targets"], self.ground_t,
                                      self.margin)
