"""The ShapesWorld tokenizer: the generic word-level CLIP tokenizer (:mod:`dptune.backbone.tokenizers`) over
the world's vocabulary. The builders are re-exported here for existing callers."""

from __future__ import annotations

from dptune.backbone.tokenizers import (
    BOS,
    DEFAULT_MAX_LENGTH,
    EOS,
    EOW,
    build_clip_tokenizer,
    build_vocab_and_merges,
    check_single_tokens,
    save_vocab_files,
)


def shapesworld_tokenizer(max_length: int = DEFAULT_MAX_LENGTH):
    """A ``CLIPTokenizer`` mapping every ShapesWorld word to one token (``max_length`` counts BOS/EOS)."""
    from dptune.shapesworld.grammar import vocabulary

    return build_clip_tokenizer(list(vocabulary()), max_length=max_length)


__all__ = [
    "BOS", "DEFAULT_MAX_LENGTH", "EOS", "EOW", "build_clip_tokenizer", "build_vocab_and_merges",
    "check_single_tokens", "save_vocab_files", "shapesworld_tokenizer",
]
