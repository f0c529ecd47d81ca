"""Hard and random negatives for ShapesWorld (paper Appendix B.1: the septuple's y_neg, x_neg, y_rand, x_rand).

Hard-negative captions are *minimal edits* of the positive spec, each changing exactly one attribute:

* ``colour``: one object's colour -> another colour      * ``shape``: one object's shape -> another shape
* ``count``:  the number (2-4) -> another number           * ``swap``:  exchange the colours of the 2 objects
* ``flip``:   the relation -> its opposite (left <-> right, above <-> below)

Every edit makes the positive caption false on the hard-negative scene and vice versa (a kind disappears,
the count changes, or the relation reverses). Hard-negative images keep the positive layout (same slots,
new attributes; for ``flip`` the two objects trade places), mirrored or re-sampled only when the edited
layout would break the split filter. Random negatives are an unrelated caption + render of the same split.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dptune.shapesworld.grammar import CATEGORIES, COLOURS, COUNTS, OPPOSITE, SHAPES, Kind, PromptSpec, Scene
from dptune.shapesworld.render import make_obj, mirrored, place, satisfies, scene_for_spec, spec_object_kinds
from dptune.shapesworld.splits import is_id_spec, sample_spec
from dptune.shapesworld.truth import prompt_holds

EDITS: tuple[str, ...] = ("colour", "shape", "count", "swap", "flip")
# The edit that tests what a category is about gets half of the hard negatives (the rest: any edit).
PRIMARY_EDIT: dict[str, str] = {"count": "count", "binding": "swap", "relation": "flip"}
PRIMARY_EDIT_SHARE = 0.5
_RANDOM_TRIES = 100


def _try_spec(spec: PromptSpec, **changes) -> PromptSpec | None:
    """The spec with ``changes`` applied, or None if that breaks the grammar (e.g. two red objects)."""
    fields = {"category": spec.category, "kinds": spec.kinds, "count": spec.count, "relation": spec.relation}
    fields.update(changes)
    try:
        return PromptSpec(**fields)
    except ValueError:
        return None


def _replace_kind(kinds: tuple[Kind, ...], i: int, kind: Kind) -> tuple[Kind, ...]:
    return kinds[:i] + (kind,) + kinds[i + 1 :]


def hard_negative_candidates(spec: PromptSpec) -> list[tuple[str, PromptSpec]]:
    """All (edit, edited spec) minimal edits of ``spec``, in a fixed order."""
    out: list[tuple[str, PromptSpec | None]] = []
    for i, k in enumerate(spec.kinds):
        out += [("colour", _try_spec(spec, kinds=_replace_kind(spec.kinds, i, Kind(c, k.shape))))
                for c in COLOURS if c != k.colour]
        out += [("shape", _try_spec(spec, kinds=_replace_kind(spec.kinds, i, Kind(k.colour, s))))
                for s in SHAPES if s != k.shape]
    if spec.category == "count":
        out += [("count", _try_spec(spec, count=n)) for n in COUNTS if n != spec.count]
    if len(spec.kinds) == 2:
        a, b = spec.kinds
        out.append(("swap", _try_spec(spec, kinds=(Kind(b.colour, a.shape), Kind(a.colour, b.shape)))))
    if spec.category == "relation":
        out.append(("flip", _try_spec(spec, relation=OPPOSITE[spec.relation])))
    return [(e, s) for e, s in out if s is not None]


def sample_hard_negative(spec: PromptSpec, rng: np.random.Generator, id_only: bool) -> tuple[str, PromptSpec]:
    """Pick an edit kind, then one edit of that kind.

    The category's defining edit (count: ``count``, binding: ``swap``, relation: ``flip``) is taken with
    probability ``PRIMARY_EDIT_SHARE``; otherwise the kind is uniform over the available ones. With
    ``id_only`` (training and ID data) edits that would create a held-out composition are excluded.
    """
    cands = [(e, s) for e, s in hard_negative_candidates(spec) if not id_only or is_id_spec(s)]
    if not cands:
        raise RuntimeError(f"no hard negative for {spec} within the split; this spec cannot be trained on")
    kinds = sorted({e for e, _ in cands}, key=EDITS.index)
    primary = PRIMARY_EDIT.get(spec.category)
    if primary in kinds and rng.random() < PRIMARY_EDIT_SHARE:
        edit = primary
    else:
        edit = kinds[int(rng.integers(len(kinds)))]
    pool = [s for e, s in cands if e == edit]
    return edit, pool[int(rng.integers(len(pool)))]


def spec_diff(a: PromptSpec, b: PromptSpec) -> set[str]:
    """Names of the attributes that differ: 'category', 'count', 'relation', 'colour<i>', 'shape<i>'."""
    d = {name for name in ("category", "count", "relation") if getattr(a, name) != getattr(b, name)}
    for i, (ka, kb) in enumerate(zip(a.kinds, b.kinds, strict=False)):
        if ka.colour != kb.colour:
            d.add(f"colour{i}")
        if ka.shape != kb.shape:
            d.add(f"shape{i}")
    return d


def _edited_layout(scene: Scene, hn_spec: PromptSpec, edit: str, rng: np.random.Generator) -> Scene | None:
    """The positive layout carrying the hard-negative attributes (None if extra objects do not fit)."""
    kinds = spec_object_kinds(hn_spec)
    geoms = [o.geom for o in scene.objects]
    if edit == "flip":  # the two objects trade places
        geoms = geoms[::-1]
    geoms = geoms[: len(kinds)]
    while len(geoms) < len(kinds):  # count went up: add objects in free space
        g = place(rng, geoms)
        if g is None:
            return None
        geoms.append(g)
    return Scene(tuple(make_obj(k, *g) for k, g in zip(kinds, geoms, strict=True)))


def hard_negative_scene(scene: Scene, hn_spec: PromptSpec, edit: str, rng: np.random.Generator,
                        accept: Callable[[Scene], bool] | None = None) -> Scene:
    """A render-ready scene of ``hn_spec`` with the layout of ``scene`` (mirrored/re-sampled if needed)."""
    base = _edited_layout(scene, hn_spec, edit, rng)
    if base is not None:
        for h, v in ((False, False), (True, False), (False, True), (True, True)):
            cand = mirrored(base, h, v) if (h or v) else base
            if satisfies(hn_spec, cand) and (accept is None or accept(cand)):
                return cand
    return scene_for_spec(hn_spec, rng, accept)


def random_negative(spec: PromptSpec, scene: Scene, rng: np.random.Generator, split: str,
                    accept: Callable[[Scene], bool] | None = None) -> tuple[PromptSpec, Scene]:
    """An unrelated (caption, scene) of ``split``: neither caption is true of the other's scene."""
    for _ in range(_RANDOM_TRIES):
        r_spec = sample_spec(rng, CATEGORIES[int(rng.integers(len(CATEGORIES)))], split)
        if r_spec == spec or prompt_holds(r_spec, scene.objects)[0]:
            continue
        r_scene = scene_for_spec(r_spec, rng, accept)
        if not prompt_holds(spec, r_scene.objects)[0]:
            return r_spec, r_scene
    raise RuntimeError(f"no random negative found for {spec} in {_RANDOM_TRIES} tries")
