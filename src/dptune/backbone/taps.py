"""Feature taps on a diffusers ``UNet2DConditionModel`` (paper Eq. 1: F_t = UNet_l(z_t, CLIP(y), t)).

Block names and what they tap (shapes for SD 1.x/2.x at 512x512, i.e. 64x64 latents):

======  ===========================================================  ============  =================
name    diffusers module, tapped value                               shape         paper (Table 6)
======  ===========================================================  ============  =================
down0   ``down_blocks[0]`` output (after its downsampler)            320 x 32x32   bottom1
down1   ``down_blocks[1]`` output (after its downsampler)            640 x 16x16   bottom2
down2   ``down_blocks[2]`` output (after its downsampler)            1280 x 8x8    bottom3
down3   ``down_blocks[3]`` output (no downsampler)                   1280 x 8x8    --
mid     ``mid_block`` output                                         1280 x 8x8    middle (default)
up0     ``up_blocks[0]`` hidden state *before* its upsampler         1280 x 8x8    up1
up1     ``up_blocks[1]`` hidden state before its upsampler           1280 x 16x16  up2
up2     ``up_blocks[2]`` hidden state before its upsampler           640 x 32x32   up3
up3     ``up_blocks[3]`` output (no upsampler)                       320 x 64x64   --
======  ===========================================================  ============  =================

The paper's seven probed blocks run bottom1..3, middle, up1..3 with sizes 32, 16, 8, 8, 8, 16(, 32): that is
"after down-sampling, before up-sampling", which is what these taps read. (The official code's ``up1`` is
``up_blocks[1]`` *after* its upsampler, 1280x32x32 -- a different tensor; use ``up1`` here and interpolate if
you need to match it.)

Truncated forward: a hook on the last requested block raises ``_StopForward`` right after capturing it, so
the rest of the U-Net never runs (for ``mid``: no up block runs at all). Because the captured tensors are the
same tensors a full forward computes, they are identical to a full forward's and keep their autograd graph.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

FUSE_MODES = ("sum", "concat")


class UnknownBlockError(ValueError):
    """A requested block name does not exist in this U-Net."""


class _StopForward(Exception):  # noqa: N818 -- control flow, not an error
    """Raised by the last tap to end the U-Net forward early."""


def block_names(unet: nn.Module) -> list[str]:
    """Valid tap names for ``unet`` in forward (execution) order."""
    names = [f"down{i}" for i in range(len(unet.down_blocks))]
    if getattr(unet, "mid_block", None) is not None:
        names.append("mid")
    names += [f"up{i}" for i in range(len(unet.up_blocks))]
    return names


def check_blocks(unet: nn.Module, blocks: Sequence[str]) -> list[str]:
    """Validate names; return them sorted in execution order. Raises listing the valid names."""
    if isinstance(blocks, str):
        blocks = [blocks]
    valid = block_names(unet)
    if not blocks:
        raise UnknownBlockError(f"no block requested; choose from {valid}")
    unknown = [b for b in blocks if b not in valid]
    if unknown:
        raise UnknownBlockError(f"unknown U-Net block(s) {unknown}; valid names for this U-Net: {valid}")
    return sorted(set(blocks), key=valid.index)


def block_channels_from_config(unet_cfg: dict, block: str) -> int:
    """Output channels of a U-Net block from ``block_out_channels`` (down_i: [i], mid: [-1], up_i: reversed[i])."""
    chans = list(unet_cfg["block_out_channels"])
    kind = block.rstrip("0123456789")
    idx = block[len(kind) :]
    if block == "mid":
        return chans[-1]
    if kind in ("down", "up") and idx.isdigit() and int(idx) < len(chans):
        return chans[int(idx)] if kind == "down" else chans[::-1][int(idx)]
    valid = [f"down{i}" for i in range(len(chans))] + ["mid"] + [f"up{i}" for i in range(len(chans))]
    raise ValueError(f"unknown block {block!r}; choose from {valid}")


def _module_for(unet: nn.Module, name: str) -> tuple[nn.Module, bool]:
    """Module to hook for ``name`` and whether to hook its *input* (pre-hook on an upsampler)."""
    if name == "mid":
        return unet.mid_block, False
    kind = name.rstrip("0123456789")
    idx = int(name[len(kind) :])
    if kind == "down":
        return unet.down_blocks[idx], False
    block = unet.up_blocks[idx]
    upsamplers = getattr(block, "upsamplers", None)
    if upsamplers:
        return upsamplers[0], True
    return block, False


@dataclass
class Taps:
    """Captured feature maps, filled during a forward inside :func:`feature_taps`."""

    blocks: list[str]
    truncate: bool
    features: dict[str, torch.Tensor] = field(default_factory=dict)

    def complete(self) -> bool:
        return all(b in self.features for b in self.blocks)


@contextlib.contextmanager
def feature_taps(unet: nn.Module, blocks: Sequence[str], truncate: bool = True) -> Iterator[Taps]:
    """Install taps on ``blocks``; with ``truncate`` the forward stops after the last of them.

    Hooks are removed on exit, also when the body raises. Use :func:`run_tapped` to call the U-Net.
    """
    taps = Taps(blocks=check_blocks(unet, blocks), truncate=truncate)
    last = taps.blocks[-1]
    handles = []

    def make_hook(name: str, pre: bool):
        def capture(value: torch.Tensor) -> None:
            taps.features[name] = value
            if truncate and name == last:
                raise _StopForward

        if pre:  # forward_pre_hook(module, args): args[0] is the hidden state entering the upsampler
            return lambda module, args: capture(args[0])
        # down blocks return (hidden_states, residuals); mid/up blocks return the hidden state
        return lambda module, args, out: capture(out[0] if isinstance(out, tuple) else out)

    try:
        for name in taps.blocks:
            module, pre = _module_for(unet, name)
            hook = make_hook(name, pre)
            register = module.register_forward_pre_hook if pre else module.register_forward_hook
            handles.append(register(hook))
        yield taps
    finally:
        for h in handles:
            h.remove()


def run_tapped(unet: nn.Module, taps: Taps, *args, **kwargs):
    """Call ``unet(*args, **kwargs)`` under installed taps. Returns the U-Net output, or ``None`` when
    the forward was truncated (the noise prediction does not exist then)."""
    try:
        out = unet(*args, **kwargs)
    except _StopForward:
        return None
    if not taps.complete():  # a hook did not fire: the block is not on this U-Net's forward path
        missing = [b for b in taps.blocks if b not in taps.features]
        raise RuntimeError(f"U-Net forward finished without reaching block(s) {missing}")
    return out


def fuse_features(features: dict[str, torch.Tensor], mode: str = "sum") -> torch.Tensor:
    """Combine several block maps (paper Table 6): bilinear resize to the largest map, then add (``sum``,
    needs equal channel counts) or stack channels (``concat``). Returns (B, C, H, W)."""
    if mode not in FUSE_MODES:
        raise ValueError(f"unknown fusion mode {mode!r}; choose from {FUSE_MODES}")
    maps = list(features.values())
    if len(maps) == 1:
        return maps[0]
    size = max((m.shape[-2:] for m in maps), key=lambda s: s[0] * s[1])
    resized = [m if m.shape[-2:] == size else F.interpolate(m, size=size, mode="bilinear") for m in maps]
    if mode == "concat":
        return torch.cat(resized, dim=1)  # (B, sum C_i, H, W)
    channels = {name: m.shape[1] for name, m in features.items()}
    if len(set(channels.values())) != 1:
        raise ValueError(f"additive fusion needs equal channel counts, got {channels}; use fuse='concat'")
    return torch.stack(resized).sum(0)  # (B, C, H, W)
