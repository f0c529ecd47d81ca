"""Paraphrases: every scene spec can be written several ways, as people write prompts.

Wording 0 of each category is the canonical caption (:func:`dptune.shapesworld.grammar.caption`). Wordings
1-3 are *training* wordings (the U-Net of the shipped model is trained on wordings 0-3); wordings 4-5 are the
*paraphrase split*: never used to train the U-Net, only seen by the text encoder during its contrastive
pretraining -- as real SD's U-Net never saw most of what CLIP read. The judge reads the spec, never the text,
so every wording is judged exactly.

Wordings change articles, numerals (words or digits), word order inside a phrase ("a circle that is red"),
and relation synonyms ("over", "beneath", "on the left side of"); each string names exactly one spec
(checked by :func:`wording_table`), so parsing a paraphrase is a table look-up.
"""

from __future__ import annotations

from functools import lru_cache

from dptune.shapesworld.grammar import COUNT_WORDS, PromptSpec

N_WORDINGS = 6
TRAIN_WORDINGS: tuple[int, ...] = (0, 1, 2, 3)
PARAPHRASE_WORDINGS: tuple[int, ...] = (4, 5)

# {c}/{s}: colour/shape, {n}: count as a word, {d}: as a digit; {A}/{B}: "colour shape" of the two objects.
_TEMPLATES: dict[str, tuple[str, ...]] = {
    "colour": ("a {c} {s}", "one {c} {s}", "{c} {s}", "a single {c} {s}", "a {s} that is {c}", "a {s} in {c}"),
    "count": ("{n} {c} {s}s", "{d} {c} {s}s", "exactly {n} {c} {s}s", "{n} {s}s that are {c}",
              "a group of {n} {c} {s}s", "{d} {s}s in {c}"),
    "binding": ("a {A} and a {B}", "{A} and {B}", "a {A} with a {B}", "one {A} and one {B}",
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
    from dptune.shapesworld.grammar import CATEGORIES
    from dptune.shapesworld.splits import all_specs

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
