"""Which tokens of a prompt are its subjects (the tokens Attend-and-Excite excites).

The paper lets the user pick the subject tokens; dptune picks them automatically with one documented rule:

* a word that follows a colour word or a number word (and is not itself one) is a subject noun: "three blue
  squares" -> squares, "a red circle to the left of a blue square" -> circle, square;
* any word of a small list of common nouns is a subject too ("a photo of a dog" -> dog; "photo" is excluded).

A subject word that the tokenizer splits into several tokens contributes its first token. Words are matched
without punctuation and case; positions count the start token as 0, so the first word is at 1.
"""

from __future__ import annotations

import re

COLOUR_WORDS = frozenset(
    "red green blue yellow orange purple pink brown black white grey gray golden silver".split())
NUMBER_WORDS = frozenset("a an one two three four five six seven eight nine ten several many".split())
KNOWN_NOUNS = frozenset(
    "circle circles square squares triangle triangles cube cubes sphere spheres ball balls box boxes "
    "cat cats dog dogs bird birds horse horses cow cows sheep bear bears elephant elephants zebra giraffe "
    "car cars bus truck bicycle motorcycle train boat airplane apple apples banana bananas orange oranges "
    "cake pizza bowl cup cups bottle chair chairs table bench bed clock vase book books umbrella bag "
    "man woman men women person people child boy girl tree trees flower flowers house mountain".split())
NOT_SUBJECTS = frozenset("of to the and with on in at near left right above below behind photo picture "
                         "image painting".split())


def _words(prompt: str) -> list[str]:
    return prompt.split()


def _clean(word: str) -> str:
    return re.sub(r"[^a-z0-9]", "", word.lower())


def subject_words(prompt: str) -> list[int]:
    """Indices (into ``prompt.split()``) of the subject words of ``prompt`` by the module's rule."""
    words = [_clean(w) for w in _words(prompt)]
    out = []
    for i, word in enumerate(words):
        if not word or word in NOT_SUBJECTS or word in COLOUR_WORDS or word in NUMBER_WORDS:
            continue
        after_modifier = i > 0 and (words[i - 1] in COLOUR_WORDS or words[i - 1] in NUMBER_WORDS)
        if after_modifier or word in KNOWN_NOUNS:
            out.append(i)
    return out


def subject_tokens(prompt: str, tokenizer) -> list[int]:
    """Positions in ``tokenizer(prompt).input_ids`` (start token = 0) of the subject words' first tokens."""
    words = _words(prompt)
    starts, position = [], 1  # 0 is the start token
    for word in words:
        starts.append(position)
        position += len(tokenizer(word, add_special_tokens=False).input_ids)
    limit = int(tokenizer.model_max_length) - 1  # the last position holds the end token
    return [starts[i] for i in subject_words(prompt) if starts[i] < limit]


def describe(prompt: str, tokenizer, indices: list[int]) -> list[str]:
    """The tokens at ``indices`` (for logs and error messages)."""
    ids = tokenizer(prompt).input_ids
    return [tokenizer.convert_ids_to_tokens(ids[i]) if i < len(ids) else f"<{i}: past the end>" for i in indices]
