"""ShapesWorld grammar: the structured scene/prompt spec that captions, renders and the judge all share.

A :class:`PromptSpec` is the single source of truth for a caption: its text is *generated* from the spec
(:func:`caption`), the renderer builds scenes that satisfy it, and the judge scores images against it.

Caption categories (equal shares in training, GenEval-style):

* ``colour``   "a red circle"                              one object
* ``count``    "three blue squares"                        2-4 objects of one kind
* ``binding``  "a red circle and a green triangle"         two objects differing in colour AND shape
* ``relation`` "a red circle to the left of a blue square" two such objects and a spatial relation
"""

from __future__ import annotations

from dataclasses import dataclass

IMAGE_SIZE = 32
COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow")
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
# Saturated, mutually distant RGB values so nearest-palette colour recovery stays exact under mild blur.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 200, 30),
}
BACKGROUND: tuple[int, int, int] = (255, 255, 255)
CATEGORIES: tuple[str, ...] = ("colour", "count", "binding", "relation")
RELATIONS: tuple[str, ...] = ("left", "right", "above", "below")
RELATION_PHRASES: dict[str, str] = {
    "left": "to the left of",
    "right": "to the right of",
    "above": "above",
    "below": "below",
}
OPPOSITE: dict[str, str] = {"left": "right", "right": "left", "above": "below", "below": "above"}
COUNTS: tuple[int, ...] = (2, 3, 4)
COUNT_WORDS: dict[int, str] = {2: "two", 3: "three", 4: "four"}


@dataclass(frozen=True, order=True)
class Kind:
    """An object type: a (colour, shape) pair, e.g. red circle."""

    colour: str
    shape: str

    def __post_init__(self) -> None:
        if self.colour not in COLOURS:
            raise ValueError(f"unknown colour {self.colour!r}; use one of {list(COLOURS)}")
        if self.shape not in SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}; use one of {list(SHAPES)}")

    @property
    def phrase(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass(frozen=True)
class Obj:
    """One object of a scene (rendered or detected by the judge).

    ``box`` is the tight pixel box (x0, y0, x1, y1) with exclusive x1/y1. ``geom`` is the render geometry
    (cx, cy, radius) in pixel units, None for objects found by the judge.
    """

    colour: str
    shape: str
    box: tuple[int, int, int, int]
    geom: tuple[float, float, float] | None = None

    @property
    def kind(self) -> Kind:
        return Kind(self.colour, self.shape)

    @property
    def centre(self) -> tuple[float, float]:
        """Box centre (x, y) in pixels: relations are judged between these."""
        x0, y0, x1, y1 = self.box
        return (x0 + x1) / 2.0, (y0 + y1) / 2.0

    def box_cxcywh(self, size: int = IMAGE_SIZE) -> tuple[float, float, float, float]:
        """Box as normalised (cx, cy, w, h) in [0, 1]."""
        x0, y0, x1, y1 = self.box
        return ((x0 + x1) / 2 / size, (y0 + y1) / 2 / size, (x1 - x0) / size, (y1 - y0) / size)


@dataclass(frozen=True)
class Scene:
    objects: tuple[Obj, ...]


@dataclass(frozen=True)
class PromptSpec:
    """Structured content of a caption; validated so every spec has exactly one well-formed caption.

    ``kinds`` has one entry for colour/count and two (differing in colour AND shape) for binding/relation.
    For relation, the caption reads ``kinds[0] <relation> kinds[1]``.
    """

    category: str
    kinds: tuple[Kind, ...]
    count: int = 1
    relation: str | None = None

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise ValueError(f"unknown category {self.category!r}; use one of {list(CATEGORIES)}")
        want = 1 if self.category in ("colour", "count") else 2
        if len(self.kinds) != want:
            raise ValueError(f"category {self.category!r} needs {want} kind(s), got {len(self.kinds)}")
        if self.category == "count":
            if self.count not in COUNTS:
                raise ValueError(f"count must be one of {list(COUNTS)}, got {self.count}")
        elif self.count != 1:
            raise ValueError(f"count={self.count} is only allowed for category 'count'; use count=1")
        if want == 2:
            a, b = self.kinds
            if a.colour == b.colour or a.shape == b.shape:
                raise ValueError(f"the two objects must differ in colour and shape, got {a} and {b}")
        if (self.category == "relation") != (self.relation is not None):
            raise ValueError("relation must be set exactly when category is 'relation'")
        if self.relation is not None and self.relation not in RELATIONS:
            raise ValueError(f"unknown relation {self.relation!r}; use one of {list(RELATIONS)}")


@dataclass(frozen=True)
class Prompt:
    """A caption with its structured spec; build with :func:`make_prompt` or :func:`parse_prompt`."""

    text: str
    category: str
    spec: PromptSpec

    def __post_init__(self) -> None:
        from dptune.shapesworld.wordings import wordings

        if self.category != self.spec.category or self.text not in wordings(self.spec):
            raise ValueError(f"prompt text/category {self.text!r}/{self.category} do not match its spec; "
                             "build prompts with make_prompt(spec) or parse_prompt(text)")


def caption(spec: PromptSpec) -> str:
    """The one caption string of a spec."""
    k = spec.kinds
    if spec.category == "colour":
        return f"a {k[0].phrase}"
    if spec.category == "count":
        return f"{COUNT_WORDS[spec.count]} {k[0].colour} {k[0].shape}s"
    if spec.category == "binding":
        return f"a {k[0].phrase} and a {k[1].phrase}"
    return f"a {k[0].phrase} {RELATION_PHRASES[spec.relation]} a {k[1].phrase}"


def make_prompt(spec: PromptSpec, wording: int = 0) -> Prompt:
    """The prompt of ``spec`` in wording ``wording`` (0 = the canonical caption; see :mod:`.wordings`)."""
    from dptune.shapesworld.wordings import wording as word

    return Prompt(text=word(spec, wording), category=spec.category, spec=spec)


def parse_prompt(text: str) -> Prompt:
    """Parse a ShapesWorld caption in any of its wordings back into a :class:`Prompt` (inverse of
    :func:`caption` and of :func:`dptune.shapesworld.wordings.wording`)."""
    from dptune.shapesworld.wordings import wording_table

    norm = " ".join(text.lower().strip().rstrip(".").split())
    if norm in wording_table():
        spec, _ = wording_table()[norm]
        return Prompt(text=norm, category=spec.category, spec=spec)
    raise ValueError(f"{text!r} is not a ShapesWorld caption; expected e.g. 'a red circle', 'two blue squares' "
                     "(or '2 blue squares'), 'a red circle and a green triangle' or 'a red circle to the left of "
                     "a blue square' (or 'a red circle left of a blue square'); `dptune shapesworld render` shows "
                     "more")


def vocabulary() -> list[str]:
    """Every word of any caption, referring expression or eval prompt (lower-case, sorted, no punctuation)."""
    words = {"a", "and", "the", "to", "of", "left", "right", "above", "below"}
    words.update(COLOURS)
    words.update(SHAPES)
    words.update(f"{s}s" for s in SHAPES)
    words.update(COUNT_WORDS.values())
    from dptune.shapesworld.wordings import wording_words

    words.update(wording_words())  # the paraphrases' words too: the text encoder reads every wording
    return sorted(words)
