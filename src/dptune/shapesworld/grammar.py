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

import itertools
from dataclasses import dataclass
from functools import lru_cache

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
        if self.category != self.spec.category or self.text not in wordings(self.spec):
            raise ValueError(f"prompt text/category {self.text!r}/{self.category} do not match its spec; "
                             "build prompts with make_prompt(spec) or parse_prompt(text)")


def caption(spec: PromptSpec) -> str:
    """The one canonical caption of a spec: its wording 0 (:func:`wording`)."""
    return wording(spec, 0)


def make_prompt(spec: PromptSpec, index: int = 0) -> Prompt:
    """The prompt of ``spec`` in wording ``index`` (0 = the canonical caption; see :func:`wording`)."""
    return Prompt(text=wording(spec, index), category=spec.category, spec=spec)


def parse_prompt(text: str) -> Prompt:
    """Parse a ShapesWorld caption in any of its wordings back into a :class:`Prompt` (the inverse of
    :func:`wording`, whose wording 0 is :func:`caption`)."""
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
    words.update(wording_words())  # the paraphrases' words too: the text encoder reads every wording
    return sorted(words)


# ---- every spec of the grammar, and its wordings (paraphrases) ----
# Wording 0 of each category is the canonical caption. Wordings 1-3 are *training* wordings (``train-base
# --paraphrases`` trains the U-Net on wordings 0-3); wordings 4-5 are the *paraphrase split*: never used to
# train a U-Net, only read by the text encoder in its contrastive pretraining -- as real SD's U-Net never saw
# most of what CLIP read. They change articles, numerals (words or digits), order inside a phrase ("a circle
# that is red") and relation synonyms ("over", "beneath"); each string names exactly one spec
# (:func:`wording_table` checks), so parsing any wording is a table look-up and the judge stays exact.
# Every construction a paraphrase uses also occurs in some training wording, in other words, as in real
# captions: binding's wording 3 puts both colours after their shapes with "in" (its paraphrase: "that is"), and
# count's wording 3 opens with "a set of" (its paraphrase: "a group of"). Without them the U-Net swapped the
# colours of post-nominal bindings and drew one object too few for "a group of three" (docs/shapesworld_v2.md).

ALL_KINDS: tuple[Kind, ...] = tuple(Kind(c, s) for c in COLOURS for s in SHAPES)


def pairable(a: Kind, b: Kind) -> bool:
    """Two objects of a binding or relation differ in colour AND shape."""
    return a.colour != b.colour and a.shape != b.shape


def all_specs(category: str) -> list[PromptSpec]:
    """Every spec of a category, in a fixed order."""
    if category == "colour":
        return [PromptSpec("colour", (k,)) for k in ALL_KINDS]
    if category == "count":
        return [PromptSpec("count", (k,), count=n) for k in ALL_KINDS for n in COUNTS]
    pairs = [(a, b) for a, b in itertools.permutations(ALL_KINDS, 2) if pairable(a, b)]
    if category == "binding":
        return [PromptSpec("binding", p) for p in pairs]
    if category == "relation":
        return [PromptSpec("relation", p, relation=r) for p in pairs for r in RELATIONS]
    raise ValueError(f"unknown category {category!r}; use one of {list(CATEGORIES)}")


N_WORDINGS = 6
TRAIN_WORDINGS: tuple[int, ...] = (0, 1, 2, 3)
PARAPHRASE_WORDINGS: tuple[int, ...] = (4, 5)

# {c}/{s}: colour/shape, {n}: count as a word, {d}: as a digit; {A}/{B}: "colour shape" of the two objects.
_TEMPLATES: dict[str, tuple[str, ...]] = {
    "colour": ("a {c} {s}", "one {c} {s}", "{c} {s}", "a single {c} {s}", "a {s} that is {c}", "a {s} in {c}"),
    "count": ("{n} {c} {s}s", "{d} {c} {s}s", "exactly {n} {c} {s}s", "a set of {n} {s}s that are {c}",
              "a group of {n} {c} {s}s", "{d} {s}s in {c}"),
    "binding": ("a {A} and a {B}", "{A} and {B}", "a {A} with a {B}", "a {s1} in {c1} and a {s2} in {c2}",
                "a {s1} that is {c1} and a {s2} that is {c2}", "a {A} as well as a {B}"),
}
_RELATION_TEMPLATES: dict[str, tuple[str, ...]] = {
    "left": ("a {A} to the left of a {B}", "{A} left of {B}", "a {A} on the left of a {B}",
             "a {A} is to the left of a {B}", "a {A} on the left side of a {B}", "a {A} left of a {B}"),
    "right": ("a {A} to the right of a {B}", "{A} right of {B}", "a {A} on the right of a {B}",
              "a {A} is to the right of a {B}", "a {A} on the right side of a {B}", "a {A} right of a {B}"),
    "above": ("a {A} above a {B}", "{A} above {B}", "a {A} over a {B}", "a {A} is above a {B}",
              "a {A} on top of a {B}", "a {A} higher than a {B}"),
    "below": ("a {A} below a {B}", "{A} below {B}", "a {A} under a {B}", "a {A} is below a {B}",
              "a {A} beneath a {B}", "a {A} lower than a {B}"),
}


def wording(spec: PromptSpec, index: int) -> str:
    """Wording ``index`` (0 = the canonical caption) of ``spec``."""
    if not 0 <= index < N_WORDINGS:
        raise ValueError(f"wording index {index} is out of range; use 0..{N_WORDINGS - 1}")
    k = spec.kinds
    if spec.category == "relation":
        template = _RELATION_TEMPLATES[spec.relation][index]
    else:
        template = _TEMPLATES[spec.category][index]
    fields = {"c": k[0].colour, "s": k[0].shape, "n": COUNT_WORDS.get(spec.count, ""), "d": str(spec.count)}
    if len(k) == 2:
        fields.update(A=k[0].phrase, B=k[1].phrase, c1=k[0].colour, s1=k[0].shape, c2=k[1].colour, s2=k[1].shape)
    return template.format(**fields)


def wordings(spec: PromptSpec, which: tuple[int, ...] = tuple(range(N_WORDINGS))) -> list[str]:
    """The wordings of ``spec`` with the given indices (default: all)."""
    return [wording(spec, i) for i in which]


@lru_cache(maxsize=1)
def wording_table() -> dict[str, tuple[PromptSpec, int]]:
    """Every wording of every spec -> (spec, wording index); raises if one string would name two specs."""
    table: dict[str, tuple[PromptSpec, int]] = {}
    for category in CATEGORIES:
        for spec in all_specs(category):
            for i in range(N_WORDINGS):
                text = wording(spec, i)
                if text in table and table[text][0] != spec:
                    raise AssertionError(f"wording {text!r} names both {table[text][0]} and {spec}")
                table[text] = (spec, i)
    return table


def wording_words() -> set[str]:
    """Every word any wording uses (for the tokenizer's vocabulary)."""
    return {w for text in wording_table() for w in text.split()}
