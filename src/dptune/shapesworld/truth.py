"""Ground truth of a prompt on a list of objects: shared by the data generator and the judge.

Two relation tests exist on purpose:

* :func:`depicts` (generator, strict): the object is >= ``GEN_RELATION_MIN_PX`` px away from the anchor along
  the named axis *and* that axis dominates, so every rendered relation is visually unambiguous.
* :func:`judge_relation` (judge, lenient, GenEval-style): the directed offset of the box centres along the
  named axis is >= ``JUDGE_RELATION_MIN_FRAC`` of the image size; the other axis is ignored.

A strict depiction always passes the lenient test, and its mirror image always fails it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from dptune.shapesworld.grammar import IMAGE_SIZE, OPPOSITE, Kind, Obj, PromptSpec

GEN_RELATION_MIN_PX = 6.0
JUDGE_RELATION_MIN_FRAC = 3.0 / 32.0


def relation_offset(a: Obj, b: Obj, relation: str) -> tuple[float, float]:
    """(along, ortho): along > 0 when ``a`` lies in direction ``relation`` of ``b``; ortho = |other axis|."""
    (ax, ay), (bx, by) = a.centre, b.centre
    if relation == "left":
        return bx - ax, abs(ay - by)
    if relation == "right":
        return ax - bx, abs(ay - by)
    if relation == "above":  # image y grows downwards
        return by - ay, abs(ax - bx)
    if relation == "below":
        return ay - by, abs(ax - bx)
    raise ValueError(f"unknown relation {relation!r}")


def depicts(a: Obj, b: Obj, relation: str, min_px: float = GEN_RELATION_MIN_PX) -> bool:
    """Strict generator test: clear separation along the relation axis, which dominates the other axis."""
    along, ortho = relation_offset(a, b, relation)
    return along >= min_px and along >= ortho


def judge_relation(a: Obj, b: Obj, relation: str, size: int = IMAGE_SIZE) -> bool:
    """Lenient judge test: directed centre offset along the relation axis >= 3/32 of the image size."""
    along, _ = relation_offset(a, b, relation)
    return along >= JUDGE_RELATION_MIN_FRAC * size


def _describe(objects: Sequence[Obj]) -> str:
    return ", ".join(o.kind.phrase for o in objects) or "nothing"


def _of_kind(objects: Sequence[Obj], kind: Kind) -> list[Obj]:
    return [o for o in objects if o.colour == kind.colour and o.shape == kind.shape]


def prompt_holds(spec: PromptSpec, objects: Sequence[Obj], size: int = IMAGE_SIZE) -> tuple[bool, str]:
    """Is ``spec`` true of ``objects``? Returns (truth, reason).

    Rules (GenEval-style): colour = an object of that colour+shape exists; count = exactly ``count`` objects
    of that colour+shape exist (objects of *other* kinds are ignored); binding = both kinds exist;
    relation = both kinds exist and some pair of them satisfies :func:`judge_relation`.
    """
    found = f"found: {_describe(objects)}"
    groups = [_of_kind(objects, k) for k in spec.kinds]
    if spec.category == "count":
        n = len(groups[0])
        ok = n == spec.count
        return ok, f"{n} {spec.kinds[0].phrase}(s), want {spec.count} ({found})"
    missing = [k.phrase for k, g in zip(spec.kinds, groups, strict=True) if not g]
    if missing:
        return False, f"missing {' and '.join(missing)} ({found})"
    if spec.category in ("colour", "binding"):
        return True, f"all objects present ({found})"
    ok = any(judge_relation(a, b, spec.relation, size) for a in groups[0] for b in groups[1])
    verdict = "holds" if ok else "does not hold"
    return ok, f"relation {spec.relation} {verdict} ({found})"


def relation_outcome(spec: PromptSpec, objects: Sequence[Obj]) -> tuple[bool, bool, bool] | None:
    """Why a relation image passes or fails: (both objects found, the relation holds, its opposite holds), or
    None when an object is missing."""
    if spec.relation is None:
        raise ValueError(f"relation_outcome needs a relation spec, got category {spec.category!r}")
    if not all(_of_kind(objects, k) for k in spec.kinds):
        return None
    flipped = replace(spec, relation=OPPOSITE[spec.relation])
    return True, prompt_holds(spec, objects)[0], prompt_holds(flipped, objects)[0]


def spec_kinds_multiset(spec: PromptSpec) -> list[Kind]:
    """The exact list of objects a scene for ``spec`` contains (sorted)."""
    return sorted(spec.kinds * spec.count) if spec.category == "count" else sorted(spec.kinds)


def exact_scene(spec: PromptSpec, objects: Sequence[Obj], size: int = IMAGE_SIZE) -> bool:
    """The prompt holds AND the scene has no other objects (stricter than GenEval's rules)."""
    return prompt_holds(spec, objects, size)[0] and sorted(o.kind for o in objects) == spec_kinds_multiset(spec)
