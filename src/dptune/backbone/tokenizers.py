"""A ``CLIPTokenizer`` for a closed word list, built from a hand-made vocab.json / merges.txt.

Generic (any closed vocabulary): the tiny random SD of the tests and the worlds' small models use it.

Why a CLIP BPE tokenizer and not a word-level one: Stable Diffusion pipelines expect a ``CLIPTokenizer`` and
transformers records a word-level fast tokenizer as ``TokenizersBackend`` in ``model_index.json``, which other
transformers versions cannot load. A BPE whose merges glue every vocabulary word into one token behaves like
a word-level tokenizer while staying a plain ``CLIPTokenizer``.

CLIP's BPE splits a word into characters and marks the last one with ``</w>`` ("red" -> r, e, d</w>); merges
are applied lowest rank first. Appending a merge never changes how an already fully merged word is tokenized
(its path only ever used lower-ranked merges), so merges are added greedily word by word until each word
collapses to a single symbol.
"""

from __future__ import annotations

import os
import re

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
EOW = "</w>"  # CLIP's end-of-word marker
DEFAULT_MAX_LENGTH = 16

_WORD_RE = re.compile(r"[a-z]+|[0-9]")  # one CLIP pre-token: letters, or one digit (CLIP splits numbers)


def _check_words(words: list[str]) -> list[str]:
    """Return the distinct words in first-seen order; reject words CLIP would split into several pieces."""
    if not words:
        raise ValueError("the word list is empty; pass every word that captions use (e.g. ['a', 'red', 'circle'])")
    bad = [w for w in words if not isinstance(w, str) or not _WORD_RE.fullmatch(w)]
    if bad:
        raise ValueError(
            f"words {bad[:5]} are not single lower-case ASCII words or single digits; CLIP pre-tokenization "
            "would split them. Split multi-word entries on spaces and lower-case them before building the tokenizer"
        )
    return list(dict.fromkeys(words))


def _bpe(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Apply merges lowest-rank first until none applies (CLIP's BPE loop)."""
    symbols = list(symbols)
    while len(symbols) > 1:
        pairs = [(ranks.get((a, b)), i) for i, (a, b) in enumerate(zip(symbols, symbols[1:], strict=False))]
        known = [(r, i) for r, i in pairs if r is not None]
        if not known:
            break
        _, i = min(known)
        symbols[i : i + 2] = [symbols[i] + symbols[i + 1]]
    return symbols


def build_vocab_and_merges(words: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Vocab (every initial character, every merge result, the specials) and merges for ``words``."""
    words = _check_words(words)
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    tokens: list[str] = []  # vocab in insertion order; the BPE model needs pieces and merge results in it

    def add(token: str) -> None:
        if token not in tokens:
            tokens.append(token)

    for word in words:
        symbols = list(word[:-1]) + [word[-1] + EOW]
        for s in symbols:
            add(s)
        symbols = _bpe(symbols, ranks)
        while len(symbols) > 1:  # stuck: add the merge of the first two symbols and keep going
            pair = (symbols[0], symbols[1])
            ranks[pair] = len(merges)
            merges.append(pair)
            add(pair[0] + pair[1])
            symbols = _bpe(symbols, ranks)
    vocab = {tok: i for i, tok in enumerate(tokens)}
    vocab[BOS] = len(vocab)
    vocab[EOS] = len(vocab)
    return vocab, merges


def build_clip_tokenizer(words: list[str], max_length: int = DEFAULT_MAX_LENGTH):
    """A ``transformers.CLIPTokenizer`` that maps every word of ``words`` to exactly one token.

    Pad and unknown are ``<|endoftext|>`` as in CLIP. ``max_length`` counts BOS and EOS.
    """
    from transformers import CLIPTokenizer

    if max_length < 3:
        raise ValueError(f"max_length={max_length} leaves no room for a word between BOS and EOS; use >= 3")
    vocab, merges = build_vocab_and_merges(words)
    tok = CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=max_length)
    check_single_tokens(tok, words)
    return tok


def check_single_tokens(tokenizer, words: list[str]) -> None:
    """Raise if any word does not encode to exactly one (known) token."""
    unk = tokenizer.unk_token_id
    broken = []
    for w in dict.fromkeys(words):
        ids = tokenizer(w, add_special_tokens=False)["input_ids"]
        if len(ids) != 1 or ids[0] == unk:
            broken.append((w, ids))
    if broken:
        raise ValueError(f"tokenizer does not map these words to one token each: {broken[:5]}")


def save_vocab_files(words: list[str], directory: str | os.PathLike) -> None:
    """Write CLIP-format vocab.json and merges.txt (atomically) for ``words``: the hand-made source files."""
    import json

    from dptune.utils.io import atomic_write

    vocab, merges = build_vocab_and_merges(words)

    def write_vocab(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(vocab, f, ensure_ascii=False)

    def write_merges(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("#version: 0.2\n")  # CLIP's merges.txt header line, skipped by loaders
            f.writelines(f"{a} {b}\n" for a, b in merges)

    atomic_write(os.path.join(directory, "vocab.json"), write_vocab)
    atomic_write(os.path.join(directory, "merges.txt"), write_merges)
