"""Discriminative evaluation of a DPT probe: ITM accuracy and REC Precision@1 (paper Table 3, Appendix B.1).

Protocol (fixed so runs are comparable):

* every pair is scored at ONE timestep ``t`` (default 250, the best timestep of paper Table 10 / A.8; the
  official code evaluates at 500) with noise drawn from ``seed`` and the item index, the SAME noise for all
  candidates of an item, so candidates differ only in image or text;
* ITM: s(y, z) (max cosine over the matching queries, Sec. 3.1) for each candidate; the item is right when
  the positive scores highest. Ties share the credit (1/#tied), so a constant scorer earns exactly chance;
  overall = mean of the I->T and T->I accuracies (as the paper's "Overall");
* REC: the predicted box is the box of the grounding query with the highest probability p_j; a hit is
  IoU >= 0.5 with the gold box (the RefCOCO convention and the official DPT code); GIoU >= 0.5 is reported
  alongside. Chance levels: 1/#objects when the object boxes are known, and the measured hit rate of a
  random grounding query (what the ranking by p_j adds over picking any query).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from dptune.evaluation.disc_items import ITMItem, RECItem
from dptune.losses.boxes import cxcywh_to_xyxy, generalized_iou, iou
from dptune.losses.matching import matching_credit  # the one ITM accuracy rule, shared with validation

DEFAULT_T = 250
REC_THRESHOLD = 0.5


# ---- pure metrics (tested on planted numbers) -------------------------------------------------------
def itm_summary(credit_i2t: np.ndarray, credit_t2i: np.ndarray, k_i2t: int, k_t2i: int) -> dict:
    """Accuracy per direction, overall (mean of the two directions) and chance levels, in percent."""
    acc_i2t = 100.0 * float(np.mean(credit_i2t)) if len(credit_i2t) else float("nan")
    acc_t2i = 100.0 * float(np.mean(credit_t2i)) if len(credit_t2i) else float("nan")
    both = [a for a in (acc_i2t, acc_t2i) if not np.isnan(a)]
    return {
        "i2t": acc_i2t,
        "t2i": acc_t2i,
        "overall": float(np.mean(both)) if both else float("nan"),
        "n_i2t": int(len(credit_i2t)),
        "n_t2i": int(len(credit_t2i)),
        "chance_i2t": 100.0 / k_i2t if k_i2t else float("nan"),
        "chance_t2i": 100.0 / k_t2i if k_t2i else float("nan"),
    }


def rec_hits(
    pred_cxcywh: torch.Tensor,
    gold_cxcywh: torch.Tensor,
    threshold: float = REC_THRESHOLD,
    measure: str = "iou",
) -> torch.Tensor:
    """Hit mask (N,) of predicted vs gold boxes (N, 4), both normalised cxcywh: overlap >= threshold."""
    if measure not in ("iou", "giou"):
        raise ValueError(f"measure must be 'iou' or 'giou', got {measure!r}")
    a, b = cxcywh_to_xyxy(pred_cxcywh.double()), cxcywh_to_xyxy(gold_cxcywh.double())  # (N, 4)
    overlap = iou(a, b) if measure == "iou" else generalized_iou(a, b)  # (N,)
    return overlap >= threshold


def rec_summary(
    pred: torch.Tensor, gold: torch.Tensor, random_pred: torch.Tensor, object_counts: Sequence[int | None]
) -> dict:
    """P@1 (IoU and GIoU >= 0.5), random-query rate and 1/#objects chance, in percent."""
    counts = [c for c in object_counts if c]
    return {
        "p_at_1": 100.0 * rec_hits(pred, gold).double().mean().item(),
        "p_at_1_giou": 100.0 * rec_hits(pred, gold, measure="giou").double().mean().item(),
        "random_query": 100.0 * rec_hits(random_pred, gold).double().mean().item(),
        "chance_objects": 100.0 * float(np.mean([1.0 / c for c in counts])) if counts else None,
        "n": int(gold.shape[0]),
    }


# ---- running the probe -----------------------------------------------------------------------------
def _load_image(ref, size: int) -> torch.Tensor:
    """(3, size, size) in [-1, 1] from a tensor or a path (square resize, as in training)."""
    if isinstance(ref, str):
        from dptune.data.images import load_image_tensor

        return load_image_tensor(ref, size)
    img = torch.as_tensor(ref).float()
    if img.shape[-2:] != (size, size):  # e.g. 32 px ShapesWorld renders on a 16 px test model
        img = torch.nn.functional.interpolate(
            img[None], size=(size, size), mode="bilinear", align_corners=False
        )[0]
    return img


def _item_noise(shape: tuple[int, ...], seed: int, index: int) -> torch.Tensor:
    """Noise of item ``index``: a pure function of (seed, index), independent of batching."""
    gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(index))
    return torch.randn(shape, generator=gen)


@torch.no_grad()
def _score_group(probe, items: Sequence[ITMItem], first_index: int, t: int, seed: int) -> list[np.ndarray]:
    """Scores (K,) of every candidate of each item in ``items`` with one VAE, text and probe call."""
    bb = probe.backbone
    size = bb.image_size
    images = [_load_image(img, size) for it in items for img in it.images]
    texts = [txt for it in items for txt in it.texts]
    latents = bb.encode_images(torch.stack(images).to(bb.device)).float()  # (n_img, 4, h, w)
    emb = bb.encode_text(texts)  # hidden (n_txt, L, D), pooled (n_txt, Dp)
    img_idx, txt_idx, item_idx = [], [], []
    i0 = t0 = 0
    for k, it in enumerate(items):
        n = it.num_candidates
        img_idx += [i0] * n if len(it.images) == 1 else list(range(i0, i0 + n))
        txt_idx += [t0] * n if len(it.texts) == 1 else list(range(t0, t0 + n))
        item_idx += [k] * n
        i0, t0 = i0 + len(it.images), t0 + len(it.texts)
    noise = torch.stack(
        [_item_noise(tuple(latents.shape[1:]), seed, first_index + k) for k in range(len(items))]
    )
    z0 = latents[img_idx]  # (P, 4, h, w) one row per (image, text) pair
    tt = torch.full((len(img_idx),), int(t), dtype=torch.long, device=bb.device)
    z_t = bb.add_noise(z0, noise[item_idx].to(z0.device), tt)
    from dptune.backbone import TextEmbeddings

    text = TextEmbeddings(hidden=emb.hidden[txt_idx], pooled=emb.pooled[txt_idx])
    s = probe.scores(z_t.to(bb.dtype), tt, text).float().cpu().numpy()  # (P,)
    out, pos = [], 0
    for it in items:
        out.append(s[pos : pos + it.num_candidates])
        pos += it.num_candidates
    return out


def _groups(n: int, sizes: Sequence[int], batch_pairs: int) -> list[tuple[int, int]]:
    """Consecutive item ranges whose pair count stays within ``batch_pairs`` (at least one item each)."""
    out, start, count = [], 0, 0
    for i in range(n):
        if count and count + sizes[i] > batch_pairs:
            out.append((start, i))
            start, count = i, 0
        count += sizes[i]
    if n:
        out.append((start, n))
    return out


def evaluate_itm(
    probe,
    items: Sequence[ITMItem],
    t: int = DEFAULT_T,
    seed: int = 0,
    batch_pairs: int = 64,
    progress: bool = False,
) -> dict:
    """ITM accuracy of ``probe`` (a :class:`dptune.adapter.DPTProbe`) over ``items``; also per-item scores."""
    if not items:
        raise ValueError(
            "no ITM items to evaluate; build them with dptune.evaluation.disc_items.world_items(...) or "
            "load_hn_coco_items"
        )
    probe.eval()
    scores: list[np.ndarray] = []
    ranges = _groups(len(items), [it.num_candidates for it in items], batch_pairs)
    for a, b in _progress(ranges, progress, "ITM"):
        scores += _score_group(probe, items[a:b], a, t, seed)
    credit = {d: [] for d in ("i2t", "t2i")}
    ks = {d: 0 for d in ("i2t", "t2i")}
    for it, s in zip(items, scores, strict=True):
        credit[it.direction].append(float(matching_credit(s[None], [it.label])[0]))
        ks[it.direction] = it.num_candidates
    summary = itm_summary(np.array(credit["i2t"]), np.array(credit["t2i"]), ks["i2t"], ks["t2i"])
    per_category = _itm_by_category(items, scores)
    return {
        **summary,
        "t": int(t),
        "seed": int(seed),
        "per_category": per_category,
        "scores": [s.round(6).tolist() for s in scores],
    }


def _itm_by_category(items: Sequence[ITMItem], scores: list[np.ndarray]) -> dict:
    cats = sorted({str(it.meta["category"]) for it in items if "category" in it.meta})
    out = {}
    for c in cats:
        sel = [(it, s) for it, s in zip(items, scores, strict=True) if it.meta.get("category") == c]
        cr = {
            d: np.array([float(matching_credit(s[None], [it.label])[0]) for it, s in sel if it.direction == d])
            for d in ("i2t", "t2i")
        }
        out[c] = {
            k: v for k, v in itm_summary(cr["i2t"], cr["t2i"], 0, 0).items() if not k.startswith("chance")
        }
    return out


@torch.no_grad()
def evaluate_rec(
    probe,
    items: Sequence[RECItem],
    t: int = DEFAULT_T,
    seed: int = 0,
    batch_size: int = 32,
    progress: bool = False,
) -> dict:
    """REC Precision@1 of ``probe`` over ``items`` (see the module docstring for the protocol)."""
    if not items:
        raise ValueError(
            "no REC items to evaluate; build them with dptune.evaluation.disc_items.world_items(...) or "
            "load_refcoco_items"
        )
    probe.eval()
    bb = probe.backbone
    preds, randoms = [], []
    rng = torch.Generator().manual_seed(int(seed) + 7)  # random-query baseline, fixed
    for a in _progress(range(0, len(items), batch_size), progress, "REC"):
        chunk = items[a : a + batch_size]
        imgs = torch.stack([_load_image(it.image, bb.image_size) for it in chunk]).to(bb.device)
        lat = bb.encode_images(imgs).float()  # (B, 4, h, w)
        noise = torch.stack([_item_noise(tuple(lat.shape[1:]), seed, a + k) for k in range(len(chunk))])
        tt = torch.full((len(chunk),), int(t), dtype=torch.long, device=bb.device)
        z_t = bb.add_noise(lat, noise.to(lat.device), tt)
        emb = bb.encode_text([it.expression for it in chunk])
        out = probe(z_t.to(bb.dtype), tt, emb.hidden)
        boxes = out.boxes.float().cpu()  # (B, Q, 4) cxcywh
        best = out.logits_p.float().argmax(1).cpu()  # (B,) most probable grounding query
        rand = torch.randint(0, boxes.shape[1], (len(chunk),), generator=rng)
        preds.append(boxes[torch.arange(len(chunk)), best])
        randoms.append(boxes[torch.arange(len(chunk)), rand])
    pred, rand_pred = torch.cat(preds), torch.cat(randoms)  # (N, 4)
    gold = torch.tensor([it.box for it in items], dtype=torch.float64)  # (N, 4)
    counts = [len(it.object_boxes) if it.object_boxes else None for it in items]
    result = rec_summary(pred, gold, rand_pred, counts)
    hits = rec_hits(pred, gold)
    kinds = sorted({str(it.meta["kind"]) for it in items if "kind" in it.meta})
    result["per_kind"] = {
        k: 100.0 * hits[[it.meta.get("kind") == k for it in items]].double().mean().item() for k in kinds
    }
    result.update(
        {
            "t": int(t),
            "seed": int(seed),
            "threshold": REC_THRESHOLD,
            "pred_boxes": pred.round(decimals=5).tolist(),
        }
    )
    return result


def _progress(iterable, enabled: bool, desc: str):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, leave=False)
