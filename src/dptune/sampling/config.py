"""Configuration of self-correcting generation (paper Sec. 3.3, Eq. 9), whatever objective is climbed."""

from __future__ import annotations

import math
from dataclasses import dataclass

from dptune.utils.config import field

MODES = ("paper", "official")
GRAD_SPACES = ("latent", "model_input")

# Default window: correct during the first half of the trajectory only. Layout, object count and attribute
# binding are fixed at high noise; the second half refines texture, which the matching score barely sees.
# Attend-and-Excite makes the same choice (latent updates in the first 25 of 50 steps), and it halves the
# cost: the measured overhead of every-step correction on SD 2.1-base is ~1.7x (docs/self_correction.md).
DEFAULT_WINDOW = (0.0, 0.5)


@dataclass
class SelfCorrectionConfig:
    """How an objective's gradient steers sampling: z_hat_t = z_t + eta * ds(z_t, y)/dz_t (paper Eq. 9).

    ``window`` is a half-open range ``[start, end)`` of the *trajectory fraction* ``i / n`` of sampler call
    ``i`` out of ``n`` (``n`` = len(scheduler.timesteps)); ``(0, 1)`` corrects at every step.
    """

    eta: float = field(0.5, help="guidance strength eta of Eq. 9 (0 = plain Stable Diffusion; paper: 0.5)")
    window: tuple = field(
        DEFAULT_WINDOW,
        help="(start, end) fractions of the sampling trajectory where the correction applies; "
        "(0, 1) = every step",
    )
    normalize_grad: bool = field(
        False,
        help="scale ds/dz to unit RMS per sample before multiplying by eta (then use a small eta, e.g. 0.05)",
    )
    mode: str = field(
        "paper",
        help="'paper': z_hat feeds both CFG branches and the scheduler step (Eq. 9); 'official': only the "
        "conditional branch sees z_hat and the scheduler steps from z_t (the released code)",
    )
    grad_space: str = field(
        "latent",
        help="'latent': Eq. 9 on the latent the scheduler holds; 'model_input': Eq. 9 on the U-Net input "
        "scale_model_input(z_t) mapped back, so eta means the same for Euler (sigma-scaled latents) as for "
        "DDIM/PNDM/DPM-Solver (identical for those)",
    )
    grad_every: int = field(
        1,
        help="speed variant, NOT the paper: recompute ds/dz every k-th corrected step and reuse the last "
        "gradient in between (1 = recompute every step)",
    )

    def __post_init__(self) -> None:
        if isinstance(self.eta, bool) or not isinstance(self.eta, int | float) or not math.isfinite(self.eta):
            raise ValueError(f"SelfCorrectionConfig: eta must be a finite number; got {self.eta!r}")
        if self.eta < 0:
            raise ValueError(
                f"SelfCorrectionConfig: eta must be >= 0 (0 disables the correction); got {self.eta}"
            )
        self.window = _check_window(self.window)
        if self.mode not in MODES:
            raise ValueError(f"SelfCorrectionConfig: mode must be one of {MODES}; got {self.mode!r}")
        if self.grad_space not in GRAD_SPACES:
            raise ValueError(
                f"SelfCorrectionConfig: grad_space must be one of {GRAD_SPACES}; got {self.grad_space!r}"
            )
        if not isinstance(self.normalize_grad, bool):
            raise ValueError(
                f"SelfCorrectionConfig: normalize_grad must be true or false; got {self.normalize_grad!r}"
            )
        if isinstance(self.grad_every, bool) or not isinstance(self.grad_every, int) or self.grad_every < 1:
            raise ValueError(
                f"SelfCorrectionConfig: grad_every must be an integer >= 1; got {self.grad_every!r}"
            )

    @property
    def enabled(self) -> bool:
        return self.eta > 0

    def active(self, step_index: int, num_steps: int) -> bool:
        """Whether sampler call ``step_index`` (0-based) of ``num_steps`` is corrected."""
        if not self.enabled or not 0 <= step_index < num_steps:
            return False
        frac = step_index / num_steps  # trajectory fraction at the start of this call, in [0, 1)
        return self.window[0] <= frac < self.window[1]

    def active_steps(self, num_steps: int) -> list[int]:
        return [i for i in range(num_steps) if self.active(i, num_steps)]


def _check_window(window) -> tuple[float, float]:
    try:
        start, end = (float(v) for v in window)
    except (TypeError, ValueError):
        raise ValueError(
            f"SelfCorrectionConfig: window must be two numbers (start, end), e.g. (0.0, 0.5); got {window!r}"
        ) from None
    if not 0.0 <= start < end <= 1.0:
        raise ValueError(
            f"SelfCorrectionConfig: window must satisfy 0 <= start < end <= 1 (fractions of the trajectory); "
            f"got ({start}, {end})"
        )
    return (start, end)
