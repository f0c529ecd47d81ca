"""Referring expressions with gold boxes (the REC half of the DPT septuple, paper Eqs. 5-7).

Scenes hold 2-4 objects drawn from 2 colours x 2 shapes, so distractors share attributes with the target
and the expression is needed to single it out. Three expression kinds, sampled in equal shares:

* ``full``     "the red circle"                     unique colour+shape; a distractor shares colour or shape
* ``shape``    "the circle"                         unique shape among >= 2 objects
* ``relation`` "the circle to the left of the red square"   >= 2 objects fit "circle"; exactly one of them
  clearly lies left of the unique anchor (strict test) and every other one lies on the other side.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from dptune.shapesworld.grammar import RELATION_PHRASES, RELATIONS, Kind, Obj, Scene
from dptune.shapesworld.render import random_layout
from dptune.shapesworld.truth import depicts, relation_offset

REF_KINDS: tuple[str, ...] = ("full", "shape", "relation")
_SCENE_TRIES = 200


@dataclass(frozen=True)
class Descriptor:
    """A noun phrase: shape with an optional colour ("circle", "red circle")."""

    shape: str
    colour: str | None = None

    @property
    def text(self) -> str:
        return f"{self.colour} {self.shape}" if self.colour else self.shape

    def matches(self, o: Obj) -> bool:
        return o.shape == self.shape and (self.colour is None or o.colour == self.colour)


@dataclass(frozen=True)
class RefExp:
    """A referring expression; ``target`` indexes the referred object in its scene."""

    text: str
    kind: str
    target: int


def _matching(objs: Sequence[Obj], d: Descriptor) -> list[int]:
    return [i for i, o in enumerate(objs) if d.matches(o)]


def _descriptors(objs: Sequence[Obj]) -> list[Descriptor]:
    ds = {Descriptor(o.shape) for o in objs} | {Descriptor(o.shape, o.colour) for o in objs}
    return sorted(ds, key=lambda d: (d.shape, d.colour or ""))


def _attribute_refexps(objs: Sequence[Obj]) -> list[RefExp]:
    out = []
    for d in _descriptors(objs):
        hits = _matching(objs, d)
        if len(hits) != 1 or len(objs) < 2:
            continue
        t = objs[hits[0]]
        if d.colour is None:
            out.append(RefExp(f"the {d.text}", "shape", hits[0]))
        elif any(o is not t and (o.colour == t.colour or o.shape == t.shape) for o in objs):
            out.append(RefExp(f"the {d.text}", "full", hits[0]))
    return out


def _relation_refexps(objs: Sequence[Obj]) -> list[RefExp]:
    out = []
    for anchor_d in _descriptors(objs):
        anchor = _matching(objs, anchor_d)
        if len(anchor) != 1:
            continue
        a = objs[anchor[0]]
        for subj_d in _descriptors(objs):
            cands = [i for i in _matching(objs, subj_d) if i != anchor[0]]
            if len(cands) < 2 or subj_d.matches(a):
                continue
            for rel in RELATIONS:
                hits = [i for i in cands if depicts(objs[i], a, rel)]
                rest_clear = all(relation_offset(objs[i], a, rel)[0] <= 0 for i in cands if i not in hits)
                if len(hits) == 1 and rest_clear:
                    text = f"the {subj_d.text} {RELATION_PHRASES[rel]} the {anchor_d.text}"
                    out.append(RefExp(text, "relation", hits[0]))
    return out


def find_refexps(scene: Scene) -> dict[str, list[RefExp]]:
    """Every valid expression of the scene, grouped by kind."""
    found = _attribute_refexps(scene.objects) + _relation_refexps(scene.objects)
    return {k: [r for r in found if r.kind == k] for k in REF_KINDS}


def _scene_kinds(rng: np.random.Generator, pool: Sequence[Kind], n: int) -> list[Kind] | None:
    """n kinds from a random 2-colour x 2-shape corner of ``pool`` (shared attributes -> distractors)."""
    colours = sorted({k.colour for k in pool})
    shapes = sorted({k.shape for k in pool})
    cs = set(rng.choice(colours, size=2, replace=False))
    ss = set(rng.choice(shapes, size=2, replace=False))
    sub = [k for k in pool if k.colour in cs and k.shape in ss]
    if not sub:
        return None
    return [sub[int(i)] for i in rng.integers(len(sub), size=n)]


def make_ref_scene(rng: np.random.Generator, pool: Sequence[Kind],
                   accept: Callable[[Scene], bool] | None = None) -> tuple[Scene, RefExp]:
    """A 2-4 object scene (kinds from ``pool``, passing ``accept``) and one expression singling out one object.

    The expression kind is drawn uniformly from :data:`REF_KINDS`; scenes are re-sampled until it exists.
    """
    want = REF_KINDS[int(rng.integers(len(REF_KINDS)))]
    for attempt in range(_SCENE_TRIES):
        n = int(rng.integers(3, 5)) if want == "relation" else int(rng.integers(2, 5))
        kinds = _scene_kinds(rng, pool, n)
        scene = random_layout(rng, kinds, attempt) if kinds else None
        if scene is None or (accept is not None and not accept(scene)):
            continue
        exps = find_refexps(scene)[want]
        if exps:
            return scene, exps[int(rng.integers(len(exps)))]
    raise RuntimeError(f"no {want!r} referring expression found in {_SCENE_TRIES} scenes")
