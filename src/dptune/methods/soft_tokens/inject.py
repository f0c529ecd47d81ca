"""Soft-token injection by forward pre-hooks: no copied forward, and the model is restored on exit.

>>> with inject_tokens(unet, tokens) as injection:     # every denoiser call inside sees the tokens,
...     eps = unet(z, t, encoder_hidden_states=text).sample   # both CFG branches (they are one batch)

Families (the denoiser class decides; SDXL is a ``UNet2DConditionModel`` with added text/time conditioning):

* ``UNet2DConditionModel`` (SD 1.x / 2.x / SDXL): blocks ``down<i>``, ``mid``, ``up<i>`` that have
  cross-attention. Each block gets the U-Net's own ``encoder_hidden_states`` (blocks do not pass the context
  on), so a pre-hook inserting the tokens after BOS is all that is needed.
* ``SD3Transformer2DModel`` (MMDiT, joint attention): blocks ``joint<i>``. The context stream flows from
  block to block, so the pre-hook inserts the tokens and a forward hook removes them from the block's context
  output again: each chosen block sees its own tokens, exactly as in the U-Net case.

A pre-hook on the denoiser itself records the timesteps of the call (the time tokens need them).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

UNET, MMDIT = "UNet2DConditionModel", "SD3Transformer2DModel"
# position of (sample, timestep) among the positional arguments of each family's forward
_POSITIONS = {UNET: (0, 1), MMDIT: (0, 3)}
_NAMES = {UNET: ("sample", "timestep"), MMDIT: ("hidden_states", "timestep")}


def architecture_of(model: nn.Module) -> str:
    """The denoiser family of ``model`` (its class or the diffusers base class it derives from)."""
    for cls in type(model).__mro__:
        if cls.__name__ in (UNET, MMDIT):
            return cls.__name__
    raise TypeError(f"soft tokens support {UNET} (SD 1.x/2.x/SDXL) and {MMDIT} (SD3); got {type(model).__name__}")


def block_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Every block that reads the text context, by name, in execution order."""
    if architecture_of(model) == MMDIT:
        return {f"joint{i}": b for i, b in enumerate(model.transformer_blocks)}
    named = [(f"down{i}", b) for i, b in enumerate(model.down_blocks)]
    named += [("mid", model.mid_block)] if getattr(model, "mid_block", None) is not None else []
    named += [(f"up{i}", b) for i, b in enumerate(model.up_blocks)]
    return {n: b for n, b in named if _cross_dim(b) is not None}


def _cross_dim(block: nn.Module) -> int | None:
    """Context width a block's attention reads (U-Net: cross-attention to_k; MMDiT: add_k_proj), or None."""
    for m in block.modules():
        if getattr(m, "is_cross_attention", False) and hasattr(m, "to_k"):
            return int(m.to_k.in_features)
        if getattr(m, "add_k_proj", None) is not None:
            return int(m.add_k_proj.in_features)
    return None


def default_blocks(model: nn.Module) -> list[str]:
    """SoftREPA's choice on SD 1.5: the down blocks (U-Net); every joint block on SD3."""
    names = list(block_modules(model))
    down = [n for n in names if n.startswith("down")]
    return down or names


def context_dims(model: nn.Module, blocks: list[str] | None = None, strict: bool = True) -> dict[str, int]:
    """{block: context width} for ``blocks`` (default :func:`default_blocks`); unknown names raise (``strict``)
    or are left out."""
    mods = block_modules(model)
    blocks = default_blocks(model) if blocks is None else list(blocks)
    unknown = [b for b in blocks if b not in mods]
    if unknown and strict:
        raise ValueError(f"block(s) {unknown} of {architecture_of(model)} have no text attention; choose from "
                         f"{list(mods)}")
    return {b: int(_cross_dim(mods[b])) for b in blocks if b in mods}


class TokenInjection:
    """The live state of an injection: which tokens, which bank per sample (``bank``: (N,) or None = bank 0)."""

    def __init__(self, model: nn.Module, tokens) -> None:
        self.model, self.tokens, self.bank = model, tokens, None
        self.arch = architecture_of(model)
        self.timesteps: torch.Tensor | None = None  # (N,) of the current denoiser call
        self.handles: list = []

    def _record_call(self, module, args, kwargs) -> None:
        i_x, i_t = _POSITIONS[self.arch]
        n_x, n_t = _NAMES[self.arch]
        x = kwargs[n_x] if n_x in kwargs else args[i_x]
        t = kwargs[n_t] if n_t in kwargs else args[i_t]
        t = torch.as_tensor(t, device=x.device).flatten()
        self.timesteps = t.expand(x.shape[0]) if t.numel() == 1 else t  # (N,)

    def _insert(self, block: str, module, args, kwargs):
        key = "encoder_hidden_states"
        ctx = kwargs[key] if key in kwargs else args[1]  # (N, L, D)
        bank = self.bank
        if bank is not None and len(bank) != ctx.shape[0]:
            raise ValueError(f"token bank indices ({len(bank)}) do not match the batch ({ctx.shape[0]})")
        tok = self.tokens.block_tokens(block, self.timesteps, bank).to(ctx.dtype)  # (N, K, D)
        ctx = torch.cat([ctx[:, :1], tok, ctx[:, 1:]], dim=1)  # after BOS: (N, 1 + K + L - 1, D)
        mask = kwargs.get("encoder_attention_mask")
        if mask is not None:  # the U-Net turned it into an additive bias (N, 1, L): the tokens are visible (0)
            pad = mask.new_zeros(*mask.shape[:-1], tok.shape[1])
            kwargs["encoder_attention_mask"] = torch.cat([mask[..., :1], pad, mask[..., 1:]], dim=-1)
        if key in kwargs:
            kwargs[key] = ctx
        else:
            args = (args[0], ctx, *args[2:])
        return args, kwargs

    def _strip(self, module, args, output):
        context, hidden = output  # MMDiT blocks return (context, image tokens); the last block's context is None
        if context is None:
            return output
        k = self.tokens.num_tokens
        return torch.cat([context[:, :1], context[:, 1 + k:]], dim=1), hidden

    def install(self) -> None:
        mods = block_modules(self.model)
        missing = [b for b in self.tokens.blocks if b not in mods]
        if missing:
            raise ValueError(f"soft tokens name block(s) {missing} that this {self.arch} lacks ({list(mods)})")
        self.handles.append(self.model.register_forward_pre_hook(self._record_call, with_kwargs=True))
        for block in self.tokens.blocks:
            hook = (lambda b: lambda m, a, kw: self._insert(b, m, a, kw))(block)
            self.handles.append(mods[block].register_forward_pre_hook(hook, with_kwargs=True))
            if self.arch == MMDIT:
                self.handles.append(mods[block].register_forward_hook(self._strip))

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles.clear()


@contextlib.contextmanager
def inject_tokens(model: nn.Module, tokens) -> Iterator[TokenInjection]:
    """Install ``tokens`` (a :class:`~dptune.methods.soft_tokens.tokens.SoftTokens`) in ``model`` for the
    duration of the ``with`` block; the hooks are removed whatever happens inside."""
    injection = TokenInjection(model, tokens)
    try:
        injection.install()
        yield injection
    finally:
        injection.remove()


def denoiser_call(model: nn.Module, image_size: int | None = None):
    """``(z, t, hidden, pooled) -> prediction`` for ``model``'s family (the added conditioning SDXL / SD3 need:
    pooled text embedding; SDXL's size/crop ids are the native size, no crop)."""
    arch = architecture_of(model)
    if arch == MMDIT:
        return lambda z, t, h, p: model(hidden_states=z, encoder_hidden_states=h, pooled_projections=p,
                                        timestep=t).sample
    if getattr(model.config, "addition_embed_type", None) == "text_time":
        def sdxl(z, t, h, p):
            size = image_size or 8 * z.shape[-1]
            ids = torch.tensor([size, size, 0, 0, size, size], dtype=z.dtype, device=z.device).expand(len(z), 6)
            return model(z, t, encoder_hidden_states=h, added_cond_kwargs={"text_embeds": p, "time_ids": ids}).sample
        return sdxl
    return lambda z, t, h, p: model(z, t, encoder_hidden_states=h).sample
