"""LEARNING CHECK: adapter + DPT losses fit one fixed batch (total loss drops >= 50% in 200 AdamW steps)."""

import time

import torch

from dptune.adapter import AdapterConfig, DiscriminativeAdapter
from dptune.losses import cxcywh_to_xyxy, dpt_losses, iou

B, C, HW, DT = 8, 64, 4, 32


def fixed_batch():
    g = torch.Generator().manual_seed(0)
    # six feature maps per sample, as one DPT step sees them: positive image conditioned on the positive /
    # hard-negative / random caption, hard-negative image, random image, and the REC image
    feats = torch.randn(6 * B, C, HW, HW, generator=g)
    t = torch.randint(0, 1000, (B,), generator=g).repeat(6)  # same timestep for all passes of a sample
    text = torch.randn(3, B, DT, generator=g)  # positive, hard-negative, random captions
    ref_text = torch.randn(B, DT, generator=g)
    cxcy = torch.rand(B, 2, generator=g) * 0.5 + 0.25
    wh = torch.rand(B, 2, generator=g) * 0.3 + 0.1
    return feats, t, text, ref_text, torch.cat([cxcy, wh], dim=-1)


def step_loss(adapter, feats, t, text, ref_text, gold):
    out = adapter(feats, t)
    y, y_hn, y_rand = text
    pass_text = torch.cat([y, y_hn, y_rand, y, y])  # (5B, Dt): the caption each ITM pass is scored against
    pos, pos_hn, pos_rand, hn_img, rand_img = adapter.match_score(out.match_emb[: 5 * B], pass_text).view(5, B)
    i2t = torch.stack([pos, pos_hn, pos_rand], dim=1)  # (B, 3) captions for the positive image
    t2i = torch.stack([pos, hn_img, rand_img], dim=1)  # (B, 3) images for the positive caption
    rec = out.select(slice(5 * B, None))  # the REC pass
    total, terms = dpt_losses(
        logit_scale=out.logit_scale, i2t_scores=i2t, t2i_scores=t2i, rec=rec, gold_boxes=gold, ref_text_emb=ref_text
    )
    return total, terms, i2t, t2i, rec


def test_total_loss_halves_on_fixed_batch():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        cfg = AdapterConfig(
            in_channels=C, text_dim=DT, d_model=64, heads=4, ffn=128, dropout=0.0, num_queries=12, num_match_queries=2
        )
        adapter = DiscriminativeAdapter(cfg)
        opt = torch.optim.AdamW(adapter.parameters(), lr=1e-3, weight_decay=1e-2)
        batch = fixed_batch()
        start, first = time.time(), None
        for _ in range(200):
            total, terms, *_ = step_loss(adapter, *batch)
            first = terms if first is None else first
            opt.zero_grad()
            total.backward()
            torch.nn.utils.clip_grad_norm_(adapter.parameters(), 1.0)
            opt.step()
        with torch.no_grad():
            total, last, i2t, t2i, rec = step_loss(adapter, *batch)
    finally:
        torch.set_num_threads(threads)
    print({k: (round(first[k].item(), 3), round(last[k].item(), 3)) for k in last}, f"{time.time() - start:.1f}s")
    assert last["total"] <= 0.5 * first["total"]
    # the probe really learned the tasks, not just one term: positives win and the boxes fit
    assert (i2t.argmax(1) == 0).float().mean() >= 0.9 and (t2i.argmax(1) == 0).float().mean() >= 0.9
    assert last["l1"] < 0.5 * first["l1"] and last["giou"] < first["giou"]
    # REC Precision@1: the most probable grounding query's box overlaps the gold box (IoU >= 0.5)
    top = rec.boxes[torch.arange(B), rec.logits_p.argmax(1)]  # (B, 4)
    assert (iou(cxcywh_to_xyxy(top), cxcywh_to_xyxy(batch[4])) >= 0.5).all()
