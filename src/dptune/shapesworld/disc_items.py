"""ShapesWorld's discriminative item sets (paper Sec. 4.2 / Table 3 protocol on rendered scenes): ITM questions
with minimally edited hard negatives and referring expressions with their gold boxes, for any split.

Registered as the ``shapesworld-id`` / ``shapesworld-ood`` disc sets by :mod:`dptune.shapesworld.plugin`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dptune.data.eval_items import ITMItem, RECItem

_TRIES = 100


def _pick_negatives(spec, rng: np.random.Generator, n: int, id_only: bool) -> list[tuple[str, Any]]:
    """``n`` distinct minimal edits of ``spec``; the category's defining edit (count/swap/flip) is always
    one of them when it exists, the rest are drawn uniformly (None if fewer than ``n`` edits exist)."""
    from dptune.shapesworld.negatives import PRIMARY_EDIT, hard_negative_candidates
    from dptune.shapesworld.splits import is_id_spec

    cands = [(e, s) for e, s in hard_negative_candidates(spec) if not id_only or is_id_spec(s)]
    if len(cands) < n:
        return []
    primary = [i for i, (e, _) in enumerate(cands) if e == PRIMARY_EDIT.get(spec.category)]
    chosen = [primary[int(rng.integers(len(primary)))]] if primary else []
    rest = [i for i in range(len(cands)) if i not in chosen]
    chosen += [rest[int(i)] for i in rng.choice(len(rest), size=n - len(chosen), replace=False)]
    return [cands[i] for i in chosen]


def _shapes_itm_pair(rng: np.random.Generator, category: str, split: str, n_neg: int):
    """(i2t item, t2i item) for one positive scene, or None when the spec has too few edits."""
    from dptune.shapesworld.dataset import to_tensor
    from dptune.shapesworld.grammar import caption
    from dptune.shapesworld.negatives import hard_negative_scene
    from dptune.shapesworld.render import render_scene, scene_for_spec
    from dptune.shapesworld.splits import sample_spec, scene_is_id
    from dptune.shapesworld.truth import prompt_holds

    in_dist = split != "ood"
    accept = scene_is_id if in_dist else None
    spec = sample_spec(rng, category, split)
    negs = _pick_negatives(spec, rng, n_neg, id_only=in_dist)
    if not negs:
        return None
    scene = scene_for_spec(spec, rng, accept)
    hn_scenes = [hard_negative_scene(scene, s, e, rng, accept) for e, s in negs]
    if any(prompt_holds(spec, sc.objects)[0] for sc in hn_scenes):  # never a second correct image
        return None
    meta = {"category": category, "split": split, "edits": [e for e, _ in negs]}
    image = to_tensor(render_scene(scene))
    i2t = ITMItem("i2t", [image], [caption(spec)] + [caption(s) for _, s in negs], 0, dict(meta))
    t2i = ITMItem(
        "t2i", [image] + [to_tensor(render_scene(sc)) for sc in hn_scenes], [caption(spec)], 0, dict(meta)
    )
    return i2t, t2i


def shapesworld_itm_items(split: str, n: int, seed: int = 0, n_negatives: int = 3) -> list[ITMItem]:
    """``n`` i2t and ``n`` t2i items (1 positive + ``n_negatives`` hard negatives each; categories cycle).

    Hard-negative captions are minimal edits of the positive (``hard_negative_candidates``); hard-negative
    images are renders of those edits in the positive's layout, so only the edited attribute differs.
    ID items use only in-distribution compositions (also for negatives); OOD items have held-out positives.
    """
    from dptune.shapesworld.grammar import CATEGORIES
    from dptune.shapesworld.splits import check_split

    check_split(split)
    i2t, t2i = [], []
    for i in range(n):
        rng = np.random.default_rng([seed, 31, i])  # item i is a pure function of (split, seed, i)
        for _ in range(_TRIES):  # re-draw specs with too few edits (or a negative that is also true)
            pair = _shapes_itm_pair(rng, CATEGORIES[i % len(CATEGORIES)], split, n_negatives)
            if pair is not None:
                break
        else:
            raise RuntimeError(
                f"no {split} ITM item with {n_negatives} hard negatives in {_TRIES} draws; lower n_negatives"
            )
        i2t.append(pair[0])
        t2i.append(pair[1])
    return i2t + t2i


def shapesworld_rec_items(split: str, n: int, seed: int = 0) -> list[RECItem]:
    """``n`` referring-expression items (2-4 objects sharing attributes with the target)."""
    from dptune.shapesworld.dataset import to_tensor
    from dptune.shapesworld.refexp import make_ref_scene
    from dptune.shapesworld.render import render_scene
    from dptune.shapesworld.splits import ALL_KINDS, SEEN_KINDS, check_split, scene_is_id

    check_split(split)
    in_dist = split != "ood"
    items = []
    for i in range(n):
        rng = np.random.default_rng([seed, 37, i])
        scene, ref = make_ref_scene(
            rng, SEEN_KINDS if in_dist else ALL_KINDS, scene_is_id if in_dist else None
        )
        boxes = [o.box_cxcywh() for o in scene.objects]
        items.append(
            RECItem(
                to_tensor(render_scene(scene)),
                ref.text,
                boxes[ref.target],
                boxes,
                {"kind": ref.kind, "split": split, "num_objects": len(boxes)},
            )
        )
    return items
