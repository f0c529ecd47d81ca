"""ShapesWorld side of DCT: count captions and the judge's target-class accuracy (before / after the token)."""

from __future__ import annotations

import numpy as np

from dptune.utils.stats import wilson

EVAL_SEED0 = 50_000  # evaluation noise seeds start here; training noise seeds are >= 2**40 (see train.py)


def count_captions(count: int, split: str = "train") -> list[str]:
    """Captions showing ``count`` objects of one kind: training compositions only (``train``), the held-out
    kinds only (``ood``) or every kind (``all``)."""
    from dptune.shapesworld.grammar import COUNT_WORDS, COUNTS, Kind, PromptSpec, caption
    from dptune.shapesworld.splits import ALL_KINDS, HELD_OUT_KINDS

    if count != 1 and count not in COUNTS:
        raise ValueError(f"ShapesWorld counts are 1 and {list(COUNTS)}, got {count}")
    kinds: list[Kind] = {"train": [k for k in ALL_KINDS if k not in HELD_OUT_KINDS],
                         "ood": sorted(HELD_OUT_KINDS), "all": list(ALL_KINDS)}[split]
    if count == 1:
        return [f"a {k.colour} {k.shape}" for k in kinds]
    assert count in COUNT_WORDS
    return [caption(PromptSpec("count", (k,), count=count)) for k in kinds]


def count_word(count: int) -> str:
    """The caption word of a count ("three"); count 1 captions read "a red circle"."""
    from dptune.shapesworld.grammar import COUNT_WORDS

    return COUNT_WORDS.get(count, "a")


def target_accuracy(generate, count: int, seeds_per_prompt: int, split: str = "all",
                    seed0: int = EVAL_SEED0, batch: int = 32) -> dict:
    """The judge's accuracy on prompts of the target count, for ``generate(prompts, seeds) -> (B, H, W, 3)``.

    Seeds are ``seed0 ...`` (never used in training). Returns accuracy, 95% Wilson interval, n, and the
    accuracy split by training (ID) and held-out (OOD) kinds."""
    from dptune.shapesworld.judge import judge_image, parse_image

    prompts = count_captions(count, split)
    items = [(p, seed0 + j) for p in prompts for j in range(seeds_per_prompt)]
    ood = set(count_captions(count, "ood"))
    hits: list[tuple[str, bool]] = []
    objects: list[bool] = []  # the image shows `count` objects of any kind: what a count classifier rewards
    for s in range(0, len(items), batch):
        chunk = items[s:s + batch]
        images = generate([p for p, _ in chunk], [k for _, k in chunk])  # (B, H, W, 3) in [0, 1]
        for (p, _), img in zip(chunk, images, strict=True):
            u8 = np.clip(np.rint(np.asarray(img) * 255), 0, 255).astype(np.uint8)
            hits.append((p, judge_image(u8, p).correct))
            objects.append(len(parse_image(u8)) == count)
    out = _summary([h for _, h in hits])
    out["id"] = _summary([h for p, h in hits if p not in ood])
    out["ood"] = _summary([h for p, h in hits if p in ood])
    out["any_kind_count"] = _summary(objects)
    out.update(count=count, prompts=len(prompts), seeds_per_prompt=seeds_per_prompt, first_seed=seed0)
    return out


def _summary(hits: list[bool]) -> dict:
    n, k = len(hits), int(sum(hits))
    lo, hi = wilson(k, n)
    return {"accuracy": k / n if n else float("nan"), "n": n, "correct": k, "ci95": [round(lo, 4), round(hi, 4)]}
