"""Validation during training: ITM accuracy and REC Precision@1 at a fixed timestep (paper Table 3/10
protocol on held-out data), and -- stage 2 -- generation alignment by the training world's own hook (e.g. the
ShapesWorld judge; paper B.3.1 selects the stage-2 checkpoint by generation alignment on validation prompts)."""

from __future__ import annotations

import torch

from dptune.losses import cxcywh_to_xyxy, iou, matching_credit
from dptune.training.objective import DPTObjective, prepare_inputs


@torch.no_grad()
def discriminative_metrics(objective: DPTObjective, batches: list[dict], t: int, seed: int = 0) -> dict:
    """ITM (the evaluation's rule, :func:`~dptune.losses.matching_credit`): credit of the positive against the
    hard negative (1 vs 1) and against both negatives (1 vs 2), in each direction. REC: IoU >= 0.5 between the
    gold box and the box of the most probable grounding query."""
    was_training = objective.training
    objective.eval()
    gen = torch.Generator().manual_seed(seed)
    hits = {"itm_i2t_hn": [], "itm_t2i_hn": [], "itm_i2t_all": [], "itm_t2i_all": [], "rec_p1": []}
    for batch in batches:
        inputs = prepare_inputs(objective.probe.backbone, batch, gen, (t, t + 1))
        out, i2t, t2i, _ = objective.outputs(inputs)
        bsz = i2t.shape[0]
        positive = torch.zeros(bsz, dtype=torch.long)  # column 0 holds the matching pair
        hits["itm_i2t_hn"].append(matching_credit(i2t[:, :2], positive))
        hits["itm_t2i_hn"].append(matching_credit(t2i[:, :2], positive))
        hits["itm_i2t_all"].append(matching_credit(i2t, positive))
        hits["itm_t2i_all"].append(matching_credit(t2i, positive))
        rec = out.select(slice(5 * bsz, 6 * bsz))
        best = rec.logits_p.argmax(1)  # (B,) most probable grounding query
        pred = rec.boxes[torch.arange(bsz), best]  # (B, 4) cxcywh
        gold = inputs["ref_box"]  # both normalised cxcywh; iou takes xyxy
        hits["rec_p1"].append(iou(cxcywh_to_xyxy(pred.float()), cxcywh_to_xyxy(gold)) >= 0.5)
    objective.train(was_training)
    metrics = {k: torch.cat(v).float().mean().item() for k, v in hits.items()}
    metrics["itm_hn"] = (metrics["itm_i2t_hn"] + metrics["itm_t2i_hn"]) / 2
    return metrics


def generation_alignment(cfg, backbone) -> dict:
    """Generation alignment of the backbone (with its LoRA) by the hook of the world ``cfg.data``:
    ``{"gen_<category>": accuracy, "gen_overall": ...}``; ``{}`` when the world has no such hook or
    ``cfg.gen_val_prompts == 0``. The caller decides when it applies (stage 2: paper B.3.1)."""
    from dptune.backbone.pipelines import ddim_pipeline
    from dptune.plugins import get_world

    hook = get_world(cfg.data).generation_validation
    if hook is None or cfg.gen_val_prompts <= 0:
        return {}
    pipe = ddim_pipeline(backbone)  # DDIM over the backbone's (LoRA-carrying) modules, as the evaluation samples
    return hook(pipe, cfg.gen_val_prompts, cfg.gen_val_steps, cfg.gen_val_guidance, cfg.seed)

