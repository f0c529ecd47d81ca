"""The discriminative class token: one new word added to the tokenizer and the text encoder.

Only its embedding row learns. The text encoder's own embedding table is never modified: a
:class:`TokenEmbedding` takes its place while the token is in use and answers the new id with one trainable
row (initialised from the embedding of ``"a"``, as the paper does). The gradient of every other row is
therefore zero by construction (they are not parameters), AdamW's weight decay touches only the new row, and
restoring the original module leaves the model bit-identical.

Export: diffusers' textual-inversion format, ``learned_embeds.safetensors`` = ``{token: (1, D) tensor}``, which
``StableDiffusionPipeline.load_textual_inversion(folder)`` loads as is; ``dct.json`` beside it says which
classifier, class and prompt template the token was trained for.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from dptune.utils.io import load_json, load_tensors, save_json, save_tensors

EMBEDS_FILE = "learned_embeds.safetensors"  # the name diffusers' load_textual_inversion looks for
META_FILE = "dct.json"


class TokenEmbedding(nn.Module):
    """The text encoder's token embedding plus one learned row for ``token_id`` (frozen base, live row)."""

    def __init__(self, base: nn.Embedding, token_id: int, init: torch.Tensor) -> None:
        super().__init__()
        self.base, self.token_id = base, int(token_id)
        self.row = nn.Parameter(init.detach().clone().reshape(1, -1).to(base.weight))  # (1, D)

    @property
    def weight(self) -> torch.Tensor:  # transformers reads .weight (dtype, resize); the frozen table
        return self.base.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        last = self.base.num_embeddings - 1
        emb = self.base(ids.clamp(max=last))  # (B, L, D); the new id may lie past the table
        hit = (ids == self.token_id).unsqueeze(-1)  # (B, L, 1)
        return torch.where(hit, self.row.to(emb.dtype).expand_as(emb), emb)  # (B, L, D)


def text_embeddings_module(text_encoder) -> nn.Module:
    """The module that maps token ids to vectors (CLIP text: ``embeddings.token_embedding``)."""
    emb = text_encoder.get_input_embeddings()
    if not isinstance(emb, nn.Embedding | TokenEmbedding):
        raise TypeError(f"the text encoder's input embeddings are {type(emb).__name__}, not nn.Embedding")
    return emb


def add_token(tokenizer, token: str, initializer: str = "a"):
    """A copy of ``tokenizer`` with ``token`` added (the caller's tokenizer is left as it is).

    Returns (tokenizer copy, new id, initializer id). Errors name the fix: the token must be new and the
    initializer a single known token."""
    if not token or any(c.isspace() for c in token):
        raise ValueError(f"token {token!r} must be one word without spaces, e.g. '<dct>'")
    tok = copy.deepcopy(tokenizer)
    if tok.add_tokens(token) != 1:
        raise ValueError(f"the tokenizer already has {token!r}; choose a new token, e.g. '<dct-3>'")
    init_ids = tok.encode(initializer, add_special_tokens=False)
    if len(init_ids) != 1 or init_ids[0] == tok.unk_token_id:
        raise ValueError(f"initializer {initializer!r} is not one known token of this tokenizer; use e.g. 'a'")
    return tok, tok.convert_tokens_to_ids(token), init_ids[0]


@contextlib.contextmanager
def token_installed(text_encoder, token_id: int, row: torch.Tensor | TokenEmbedding) -> Iterator[TokenEmbedding]:
    """Within the block the text encoder answers ``token_id`` with ``row``; the original module comes back
    afterwards, whatever happens (other methods share the cached text encoder)."""
    original = text_embeddings_module(text_encoder)
    if isinstance(original, TokenEmbedding):
        raise RuntimeError("a class token is already installed in this text encoder; nest nothing")
    module = row if isinstance(row, TokenEmbedding) else TokenEmbedding(original, token_id, row)
    if module.token_id > original.num_embeddings:
        raise ValueError(f"token id {module.token_id} leaves a gap after the {original.num_embeddings}-row table")
    text_encoder.set_input_embeddings(module)
    try:
        yield module
    finally:
        text_encoder.set_input_embeddings(original)


def initial_row(text_encoder, init_id: int) -> torch.Tensor:
    """(D,) copy of the initializer's embedding."""
    return text_embeddings_module(text_encoder).weight[init_id].detach().clone()


# ---- export / load ------------------------------------------------------------------------------------
def save_token(directory: str | Path, token: str, row: torch.Tensor, meta: dict) -> Path:
    """Write ``learned_embeds.safetensors`` ({token: (1, D)}) and ``dct.json`` (token, class, template ...)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_tensors(directory / EMBEDS_FILE, {token: row.detach().float().reshape(1, -1).cpu().contiguous()})
    save_json(directory / META_FILE, {"token": token, **meta})
    return directory


def load_token(directory: str | Path) -> tuple[str, torch.Tensor, dict]:
    """(token, (D,) row, metadata) from a folder written by :func:`save_token`."""
    directory = Path(directory).expanduser()
    path = directory / EMBEDS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory} holds no {EMBEDS_FILE}; pass the final/tokens folder of a "
                                "`dptune train dct` run")
    tensors = load_tensors(path)
    if len(tensors) != 1:
        raise ValueError(f"{path} holds {len(tensors)} tokens; a DCT folder holds exactly one")
    ((token, row),) = tensors.items()
    meta = load_json(directory / META_FILE) if (directory / META_FILE).is_file() else {"token": token}
    return token, row.reshape(-1), meta
