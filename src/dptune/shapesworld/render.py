"""Deterministic ShapesWorld renderer: numpy masks on a 32x32 white canvas, no per-pixel drawing loops.

Geometry: an object is (cx, cy, radius) in pixel units (pixel (i, j) has its centre at (j+0.5, i+0.5));
generated scenes use integer centres (pixel corners) and integer radii 4-6.
Circle: disc of that radius; square: half-side = radius; triangle: apex up, base width 2*radius, height
2*radius. Every shape lies inside [cx-r, cx+r] x [cy-r, cy+r], so keeping those squares >= ``MIN_GAP_PX``
apart (Chebyshev) guarantees >= 2 empty pixels between objects: components never touch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import numpy as np

from dptune.shapesworld.grammar import BACKGROUND, IMAGE_SIZE, PALETTE, Kind, Obj, PromptSpec, Scene
from dptune.shapesworld.truth import depicts

# Centres sit on pixel corners and radii are whole pixels: discs then rasterise round and top/bottom
# symmetric (fill ~0.8), which keeps the judge's tests exact. Continuous positions made ~0.3% of discs
# ambiguous, half-pixel radii made square-looking discs (fill 0.94).
GRID = 1.0
RADII: tuple[float, ...] = (4.0, 5.0, 6.0)
CROWDED_RADII: tuple[float, ...] = (4.0,)  # fallback when a 4-object scene does not fit larger radii
MIN_GAP_PX = 3.0  # pixel-centre gap between object squares -> >= 2 empty pixel rows/columns
EDGE_PX = 1.0  # keep objects off the image border
_PLACE_TRIES = 60
_SCENE_TRIES = 300

_YY, _XX = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float32) + 0.5  # (S, S) pixel centres


def shape_mask(shape: str, cx: float, cy: float, r: float) -> np.ndarray:
    """Boolean (S, S) mask of one shape."""
    dx, dy = _XX - cx, _YY - cy  # (S, S)
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        return (np.abs(dx) <= r) & (np.abs(dy) <= r)
    if shape == "triangle":
        depth = dy + r  # distance below the apex row
        return (depth >= 0) & (dy <= r) & (np.abs(dx) <= depth / 2)
    raise ValueError(f"unknown shape {shape!r}")


@functools.lru_cache(maxsize=16384)
def _mask_and_box(shape: str, cx: float, cy: float, r: float) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Cached (read-only mask, tight xyxy box): generated geometry is discrete, so a few thousand entries
    cover every object and rendering becomes a table look-up."""
    mask = shape_mask(shape, cx, cy, r)
    rows, cols = np.any(mask, axis=1), np.any(mask, axis=0)
    if not rows.any():
        raise ValueError(f"{shape} at ({cx}, {cy}) r={r} renders no pixels")
    y0, y1 = np.flatnonzero(rows)[[0, -1]]
    x0, x1 = np.flatnonzero(cols)[[0, -1]]
    mask.flags.writeable = False
    return mask, (int(x0), int(y0), int(x1) + 1, int(y1) + 1)


def make_obj(kind: Kind, cx: float, cy: float, r: float) -> Obj:
    """An :class:`Obj` whose box is the tight box of its rendered mask."""
    return Obj(kind.colour, kind.shape, _mask_and_box(kind.shape, cx, cy, r)[1], (cx, cy, r))


def render_scene(scene: Scene) -> np.ndarray:
    """uint8 (S, S, 3) image of a scene on a white background."""
    img = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    img[:] = BACKGROUND
    for o in scene.objects:
        if o.geom is None:
            raise ValueError("cannot render an object without geometry (judge detections have geom=None)")
        img[_mask_and_box(o.shape, *o.geom)[0]] = PALETTE[o.colour]
    return img


def separated(a: tuple[float, float, float], b: tuple[float, float, float], gap: float = MIN_GAP_PX) -> bool:
    """Chebyshev gap between the bounding squares of two geometries is >= ``gap``."""
    reach = a[2] + b[2] + gap
    return abs(a[0] - b[0]) >= reach or abs(a[1] - b[1]) >= reach


def place(rng: np.random.Generator, placed: Sequence[tuple[float, float, float]],
          radii: Sequence[float] = RADII) -> tuple[float, float, float] | None:
    """Sample a free geometry (cx, cy, r) on the half-pixel grid, clear of ``placed``; None if none found.

    Draws ``_PLACE_TRIES`` candidates at once (vectorised rejection sampling) and keeps the first free one.
    """
    r = np.asarray(radii, dtype=np.float64)[rng.integers(0, len(radii), size=_PLACE_TRIES)]  # (T,)
    steps = np.floor((IMAGE_SIZE - 2 * (r + EDGE_PX)) / GRID).astype(np.int64) + 1  # (T,) grid positions
    cx = r + EDGE_PX + GRID * rng.integers(0, steps)  # (T,)
    cy = r + EDGE_PX + GRID * rng.integers(0, steps)  # (T,)
    free = np.ones(_PLACE_TRIES, dtype=bool)
    for px, py, pr in placed:
        reach = r + pr + MIN_GAP_PX  # (T,)
        free &= (np.abs(cx - px) >= reach) | (np.abs(cy - py) >= reach)
    idx = np.flatnonzero(free)
    if idx.size == 0:
        return None
    i = idx[0]
    return float(cx[i]), float(cy[i]), float(r[i])


def spec_object_kinds(spec: PromptSpec) -> list[Kind]:
    """Objects a scene for ``spec`` contains, in spec order (relation: subject first, anchor second)."""
    return [spec.kinds[0]] * spec.count if spec.category == "count" else list(spec.kinds)


def random_layout(rng: np.random.Generator, kinds: Sequence[Kind], attempt: int = 0) -> Scene | None:
    """Place ``kinds`` at random free positions (smaller radii on late attempts); None if they do not fit."""
    radii = RADII if attempt < _SCENE_TRIES // 3 else CROWDED_RADII
    geoms: list[tuple[float, float, float]] = []
    for _ in kinds:
        g = place(rng, geoms, radii)
        if g is None:
            return None
        geoms.append(g)
    return Scene(tuple(make_obj(k, *g) for k, g in zip(kinds, geoms, strict=True)))


def satisfies(spec: PromptSpec, scene: Scene) -> bool:
    """Scene is an exact, clearly drawn instance of ``spec`` (relation drawn with the strict test)."""
    kinds = [o.kind for o in scene.objects]
    if sorted(kinds) != sorted(spec_object_kinds(spec)):
        return False
    if spec.category != "relation":
        return True
    return depicts(scene.objects[0], scene.objects[1], spec.relation)


def _relation_variants(scene: Scene) -> list[Scene]:
    """The layout with the two objects swapped and/or x/y transposed: together these map whichever relation
    a 2-object layout shows onto any other, so relation scenes need no rejection loop."""
    (a, b) = scene.objects
    (ax, ay, ar), (bx, by, br) = a.geom, b.geom
    out = []
    for ga, gb in (((ax, ay, ar), (bx, by, br)), ((bx, by, br), (ax, ay, ar)),
                   ((ay, ax, ar), (by, bx, br)), ((by, bx, br), (ay, ax, ar))):
        out.append(Scene((make_obj(a.kind, *ga), make_obj(b.kind, *gb))))
    return out


def scene_for_spec(spec: PromptSpec, rng: np.random.Generator,
                   accept: Callable[[Scene], bool] | None = None) -> Scene:
    """A random scene that exactly satisfies ``spec`` (and ``accept``, e.g. the training-split filter)."""
    kinds = spec_object_kinds(spec)
    for attempt in range(_SCENE_TRIES):
        scene = random_layout(rng, kinds, attempt)
        if scene is None:
            continue
        variants = _relation_variants(scene) if spec.category == "relation" else [scene]
        for cand in variants:
            if satisfies(spec, cand) and (accept is None or accept(cand)):
                return cand
    raise RuntimeError(f"could not build a scene for {spec} in {_SCENE_TRIES} attempts; "
                       "the split filter may exclude every layout of this spec")


def with_kinds(scene: Scene, kinds: Sequence[Kind]) -> Scene:
    """Same geometry, new attributes (the hard-negative 'similar layout')."""
    if len(kinds) != len(scene.objects):
        raise ValueError(f"need {len(scene.objects)} kinds, got {len(kinds)}")
    return Scene(tuple(make_obj(k, *o.geom) for k, o in zip(kinds, scene.objects, strict=True)))


def mirrored(scene: Scene, horizontal: bool, vertical: bool) -> Scene:
    """Mirror object positions (shapes stay upright)."""
    out = []
    for o in scene.objects:
        cx, cy, r = o.geom
        cx = IMAGE_SIZE - cx if horizontal else cx
        cy = IMAGE_SIZE - cy if vertical else cy
        out.append(make_obj(o.kind, cx, cy, r))
    return Scene(tuple(out))
