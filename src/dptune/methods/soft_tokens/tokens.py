"""``SoftTokens``: the only trainable part of SoftREPA / AGSM, and its file format (safetensors + JSON).

Per chosen block ``b`` and token bank ``k`` (SoftREPA: one bank; AGSM: psi+ = bank 0, psi- = bank 1):

    tokens_b(t) = base[b][k]  (K, D_b)  +  time[b][k, t // 10]  (K, D_b)

i.e. K learned context tokens plus a time-dependent offset, one embedding per bucket of 10 timesteps
(zero-initialised, so a fresh bank starts time-independent). They are inserted after the first (BOS) context
token of block ``b`` by :mod:`dptune.methods.soft_tokens.inject`; the denoiser itself never changes.

On disk (a folder): ``tokens.safetensors`` (``base.<block>`` (banks, K, D), ``time.<block>`` (banks, buckets,
K, D)) and ``tokens.json`` (format, architecture, blocks, K, banks, buckets, the training config).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from dptune.utils.io import load_json, load_tensors, save_json, save_tensors

FORMAT = "dptune-soft-tokens"
TOKENS_FILE, META_FILE = "tokens.safetensors", "tokens.json"


class SoftTokens(nn.Module):
    """K soft tokens (+ time tokens) for each block of ``dims`` ({block: context dim}), in ``banks`` banks."""

    def __init__(self, architecture: str, dims: dict[str, int], num_tokens: int = 4, banks: int = 1,
                 time_buckets: int = 100, init_std: float = 0.02, seed: int = 0):
        super().__init__()
        if num_tokens < 1 or banks < 1 or time_buckets < 1 or not dims:
            raise ValueError(f"soft tokens need num_tokens, banks, time_buckets >= 1 and a block; got K={num_tokens}, "
                             f"banks={banks}, buckets={time_buckets}, blocks={list(dims)}")
        self.architecture, self.dims = architecture, dict(dims)
        self.num_tokens, self.banks, self.time_buckets = num_tokens, banks, time_buckets
        gen = torch.Generator().manual_seed(seed)
        self.base = nn.ParameterDict({b: nn.Parameter(torch.randn(banks, num_tokens, d, generator=gen) * init_std)
                                      for b, d in self.dims.items()})  # (banks, K, D_b)
        self.time = nn.ParameterDict({b: nn.Parameter(torch.zeros(banks, time_buckets, num_tokens, d))
                                      for b, d in self.dims.items()})  # (banks, buckets, K, D_b)

    @property
    def blocks(self) -> list[str]:
        return list(self.dims)

    def bucket(self, t: torch.Tensor) -> torch.Tensor:
        """Timesteps (N,) (DDPM indices or flow-matching sigma * 1000) -> time-token index t // 10, clamped."""
        return torch.div(t.float(), 10, rounding_mode="floor").long().clamp(0, self.time_buckets - 1)

    def block_tokens(self, block: str, t: torch.Tensor, bank: torch.Tensor | None = None) -> torch.Tensor:
        """Tokens of ``block`` for timesteps ``t`` (N,) from banks ``bank`` (N,) (None: bank 0) -> (N, K, D)."""
        base, time = self.base[block], self.time[block]
        bucket = self.bucket(t).to(base.device)
        bank = torch.zeros_like(bucket) if bank is None else bank.to(base.device).long()
        return base[bank] + time[bank, bucket]  # (N, K, D)

    def meta(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": 1, "architecture": self.architecture, "dims": self.dims,
                "blocks": self.blocks, "num_tokens": self.num_tokens, "banks": self.banks,
                "time_buckets": self.time_buckets}


def save_tokens(tokens: SoftTokens, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``tokens.safetensors`` + ``tokens.json`` (``extra``: method name, training config ...)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {f"base.{b}": p.detach().cpu().contiguous() for b, p in tokens.base.items()}
    tensors.update({f"time.{b}": p.detach().cpu().contiguous() for b, p in tokens.time.items()})
    save_tensors(directory / TOKENS_FILE, tensors)
    save_json(directory / META_FILE, {**tokens.meta(), **(extra or {})})
    return directory


def token_folder(path: str | Path) -> Path:
    """The folder holding ``tokens.json``: ``path`` itself, its ``tokens/`` or a run's ``final/tokens``."""
    path = Path(path).expanduser()
    for cand in (path, path / "tokens", path / "final" / "tokens"):
        if (cand / META_FILE).is_file() and (cand / TOKENS_FILE).is_file():
            return cand
    raise FileNotFoundError(f"no soft tokens at {path}: expected {META_FILE} and {TOKENS_FILE} there (or in its "
                            "tokens/ or final/tokens/); train them with `dptune train softrepa` or `dptune train agsm`")


def load_tokens(path: str | Path, model: nn.Module | None = None, num_tokens: int | None = None) -> SoftTokens:
    """Tokens from ``path`` (see :func:`token_folder`), checked against ``model``'s architecture and ``K``."""
    from dptune.methods.soft_tokens.inject import architecture_of, context_dims

    folder = token_folder(path)
    meta = load_json(folder / META_FILE)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{folder / META_FILE} is not a dptune soft-token file (format {meta.get('format')!r})")
    if num_tokens is not None and num_tokens != meta["num_tokens"]:
        raise ValueError(f"soft tokens at {folder} hold K={meta['num_tokens']} tokens but K={num_tokens} was asked "
                         f"for: pass num_tokens={meta['num_tokens']} (or none) or train tokens with K={num_tokens}")
    dims = {b: int(d) for b, d in meta["dims"].items()}
    if model is not None:
        arch = architecture_of(model)
        have = context_dims(model, list(dims), strict=False)
        if arch != meta["architecture"] or have != dims:
            raise ValueError(f"soft tokens at {folder} were trained for {meta['architecture']} with context dims "
                             f"{dims}, but this model is {arch} with {have}: train tokens for this model")
    tokens = SoftTokens(meta["architecture"], dims, meta["num_tokens"], meta["banks"], meta["time_buckets"])
    weights = load_tensors(folder / TOKENS_FILE)
    tokens.load_state_dict({k: weights[k] for k in tokens.state_dict()})
    tokens.meta_extra = {k: v for k, v in meta.items() if k not in tokens.meta()}
    return tokens.requires_grad_(False)
