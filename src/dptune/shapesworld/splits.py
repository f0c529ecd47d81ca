"""In-distribution (ID) vs. out-of-distribution (OOD) compositions of ShapesWorld.

OOD compositions are held out of training entirely -- from captions, negatives and images:

* ``HELD_OUT_KINDS``: colour-shape pairs never seen (yellow triangle, blue circle); every prompt using one
  is OOD.
* ``HELD_OUT_BINDINGS``: 5 of the 25 two-object pairings of seen kinds; no training image shows both.
* ``HELD_OUT_RELATIONS``: for 16 of the remaining 20 pairings, one of the four canonical relations
  (A left of B, B left of A, A above B, B above A); no training image clearly depicts it
  (:func:`dptune.shapesworld.truth.depicts` with a 3 px margin), so "B right of A" is held out with
  "A left of B".

The selection is a fixed, seeded shuffle of canonical sorted lists, so it never changes between runs.
"""

from __future__ import annotations

import itertools

import numpy as np

from dptune.shapesworld.grammar import (  # noqa: F401  (ALL_KINDS, all_specs: re-exported for callers)
    ALL_KINDS,
    CATEGORIES,
    OPPOSITE,
    PARAPHRASE_WORDINGS,
    Kind,
    Prompt,
    PromptSpec,
    Scene,
    all_specs,
    make_prompt,
    pairable,
)
from dptune.shapesworld.truth import depicts

SPLITS: tuple[str, ...] = ("train", "id", "ood")
HELD_OUT_KINDS: frozenset[Kind] = frozenset({Kind("yellow", "triangle"), Kind("blue", "circle")})
_SELECTION_SEED = 20240617
_N_HELD_OUT_BINDINGS = 5
_N_HELD_OUT_RELATIONS = 16
# Scene filter margin: a training image must not show a held-out relation even loosely (3 px, dominant).
_DEPICT_MARGIN_PX = 3.0

SEEN_KINDS: tuple[Kind, ...] = tuple(k for k in ALL_KINDS if k not in HELD_OUT_KINDS)


def canonical_relation(a: Kind, relation: str, b: Kind) -> tuple[Kind, str, Kind]:
    """Same fact, one spelling: 'A right of B' -> (B, left, A); 'A below B' -> (B, above, A)."""
    return (b, OPPOSITE[relation], a) if relation in ("right", "below") else (a, relation, b)


def _select_held_out() -> tuple[frozenset[frozenset[Kind]], frozenset[tuple[Kind, str, Kind]]]:
    rng = np.random.default_rng(_SELECTION_SEED)
    pairings = [frozenset(p) for p in itertools.combinations(SEEN_KINDS, 2) if pairable(*p)]  # sorted kinds
    order = rng.permutation(len(pairings))
    held_bind = frozenset(pairings[i] for i in order[:_N_HELD_OUT_BINDINGS])
    rel_hosts = [pairings[i] for i in order[_N_HELD_OUT_BINDINGS:]][:_N_HELD_OUT_RELATIONS]
    held_rel = set()
    for pair in rel_hosts:  # one canonical relation per pairing keeps the other three in training
        a, b = sorted(pair)
        options = [(a, "left", b), (b, "left", a), (a, "above", b), (b, "above", a)]
        held_rel.add(options[int(rng.integers(len(options)))])
    return held_bind, frozenset(held_rel)


HELD_OUT_BINDINGS, HELD_OUT_RELATIONS = _select_held_out()


def ood_reason(spec: PromptSpec) -> str | None:
    """Why a spec is OOD: 'kind' (unseen colour-shape pair), 'binding' (unseen pairing), 'relation'
    (unseen relation of a seen pairing); None if it is in-distribution."""
    if any(k in HELD_OUT_KINDS for k in spec.kinds):
        return "kind"
    if spec.category in ("binding", "relation") and frozenset(spec.kinds) in HELD_OUT_BINDINGS:
        return "binding"
    if spec.category == "relation":
        if canonical_relation(spec.kinds[0], spec.relation, spec.kinds[1]) in HELD_OUT_RELATIONS:
            return "relation"
    return None


def is_id_spec(spec: PromptSpec) -> bool:
    """True if the caption's composition may appear in training."""
    return ood_reason(spec) is None


def scene_is_id(scene: Scene) -> bool:
    """True if an image shows no OOD composition: no held-out kind, pairing or (loosely drawn) relation."""
    objs = scene.objects
    if any(o.kind in HELD_OUT_KINDS for o in objs):
        return False
    for a, b in itertools.permutations(objs, 2):
        if not pairable(a.kind, b.kind):
            continue
        if frozenset((a.kind, b.kind)) in HELD_OUT_BINDINGS:
            return False
        for rel in ("left", "above"):
            if (a.kind, rel, b.kind) in HELD_OUT_RELATIONS and depicts(a, b, rel, _DEPICT_MARGIN_PX):
                return False
    return True


def _split_specs() -> dict[tuple[str, str], list[PromptSpec]]:
    out = {}
    for cat in CATEGORIES:
        specs = all_specs(cat)
        out["id", cat] = [s for s in specs if is_id_spec(s)]
        out["ood", cat] = [s for s in specs if not is_id_spec(s)]
    return out


_SPECS = _split_specs()


def split_specs(split: str, category: str) -> list[PromptSpec]:
    """Specs of one category usable in ``split`` ('train' and 'id' share the ID compositions)."""
    check_split(split)
    return list(_SPECS["ood" if split == "ood" else "id", category])


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; use one of {list(SPLITS)}")


def sample_spec(rng: np.random.Generator, category: str, split: str) -> PromptSpec:
    specs = _SPECS["ood" if split == "ood" else "id", category]
    return specs[int(rng.integers(len(specs)))]


EVAL_SPLITS: tuple[str, ...] = ("id", "ood", "paraphrase")


def eval_prompts(split: str, n_per_category: int, seed: int = 0) -> list[Prompt]:
    """Deterministic eval prompts, ``n_per_category`` per category (category-major order).

    'id' prompts use compositions seen in training (generate them with new seeds); 'ood' prompts use only
    held-out compositions; 'paraphrase' prompts are the 'id' prompts, one for one, in wordings the U-Net never
    trained on (:data:`dptune.shapesworld.grammar.PARAPHRASE_WORDINGS`), so the two splits differ only in
    wording. Each category cycles through a seeded shuffle of all its compositions, so small lists are
    diverse and large ones cover everything evenly.
    """
    if split not in EVAL_SPLITS:
        raise ValueError(f"eval split must be one of {list(EVAL_SPLITS)}, got {split!r}")
    if n_per_category < 1:
        raise ValueError(f"n_per_category must be >= 1, got {n_per_category}")
    specs_split = "ood" if split == "ood" else "id"
    prompts = []
    for ci, cat in enumerate(CATEGORIES):
        specs = split_specs(specs_split, cat)
        order = np.random.default_rng([seed, ci, SPLITS.index(specs_split)]).permutation(len(specs))
        for i in range(n_per_category):
            wording = PARAPHRASE_WORDINGS[i % len(PARAPHRASE_WORDINGS)] if split == "paraphrase" else 0
            prompts.append(make_prompt(specs[order[i % len(specs)]], wording))
    return prompts
