"""Options of Attend-and-Excite (Chefer et al., SIGGRAPH 2023) with the paper's defaults.

The paper's schedule is written for 50 DDIM steps (latent updates during steps 0-24, refinement to the
thresholds at steps 0 / 10 / 20); ``reference_steps`` says so, and the generator rescales those step indices to
the run's number of steps (25 on the shipped ShapesWorld model: updates during 0-12, refinement at 0 / 5 / 10).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from dptune.utils.config import field


@dataclass
class AttendExciteConfig:
    """Attend-and-Excite: latent updates that raise the weakest subject token's cross-attention maximum."""

    token_indices: list[str] | None = field(
        None, help="subject token positions in the tokenized prompt (1 = first word; e.g. 2+5); default: chosen "
        "automatically (the word after a colour / number word, or a known noun)")
    max_iter_to_alter: int = field(25, help="latent updates during the first N steps of reference_steps (paper: "
                                   "25 of 50); rescaled to the run's steps")
    reference_steps: int = field(50, help="the step count the step indices above are written for (paper: 50)")
    scale_factor: float = field(20.0, help="latent step size alpha_t = scale_factor * sqrt(linspace(1, 0.5)) "
                                "(paper: 20)")
    thresholds: tuple = field((0.05, 0.5, 0.8), help="iterative refinement: at threshold_steps, update until the "
                              "weakest subject's attention maximum reaches these (paper: 0.05:0.5:0.8; empty = off)")
    threshold_steps: tuple = field((0, 10, 20), help="steps (of reference_steps) of the refinements (paper 0:10:20)")
    max_refinement_steps: int = field(20, help="cap on the updates of one refinement (diffusers' value: 20)")
    temperature: float = field(100.0, help="softmax temperature over the prompt's text tokens, BOS/EOS excluded")
    sigma: float = field(0.5, help="Gaussian smoothing sigma of the attention maps (paper: 0.5)")
    kernel_size: int = field(3, help="Gaussian smoothing kernel size, odd (paper: 3)")
    attention_res: int = field(16, help="side of the cross-attention maps averaged (paper: 16 on 64x64 latents); "
                               "when the model has no map of that side, the largest smaller one is used")
    batched: bool = field(True, help="excite all prompts of a call at once (same images as the per-image path, "
                          "much faster); false = one image at a time by diffusers' pipeline itself")

    def __post_init__(self) -> None:
        if isinstance(self.thresholds, dict):  # Python API: the paper's {step: threshold} form
            self.threshold_steps, self.thresholds = tuple(self.thresholds), tuple(self.thresholds.values())
        self.thresholds = tuple(float(v) for v in self.thresholds)
        self.threshold_steps = tuple(int(v) for v in self.threshold_steps)
        if len(self.thresholds) != len(self.threshold_steps):
            raise ValueError(f"thresholds {self.thresholds} and threshold_steps {self.threshold_steps} must have "
                             "the same length (pass thresholds= with nothing after it to switch refinement off)")
        if any(not 0.0 <= v <= 1.0 for v in self.thresholds):
            raise ValueError(f"thresholds are attention maxima in [0, 1]; got {self.thresholds}")
        if self.token_indices is not None:
            self.token_indices = _indices(self.token_indices)
        ints = {"max_iter_to_alter": 0, "reference_steps": 1, "max_refinement_steps": 0, "attention_res": 1}
        for name, low in ints.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")
        for name in ("scale_factor", "temperature", "sigma"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite number > 0; got {value!r}")
        if isinstance(self.kernel_size, bool) or not isinstance(self.kernel_size, int) or self.kernel_size < 1 \
                or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be an odd integer >= 1; got {self.kernel_size!r}")

    def schedule(self, steps: int) -> tuple[int, dict[int, float]]:
        """(number of steps with latent updates, {step: threshold}) rescaled from reference_steps to ``steps``."""
        scale = steps / self.reference_steps
        thresholds: dict[int, float] = {}
        for step, value in zip(self.threshold_steps, self.thresholds, strict=True):
            key = min(steps - 1, int(step * scale + 0.5))
            thresholds[key] = max(value, thresholds.get(key, 0.0))  # steps that merge keep the stricter one
        return min(steps, int(self.max_iter_to_alter * scale + 0.5)), thresholds


def _indices(values) -> list[int]:
    try:
        out = [int(v) for v in values]
    except (TypeError, ValueError):
        raise ValueError(f"token_indices must be integers (token positions, 1 = first word); got {values!r}") \
            from None
    if not out or min(out) < 1:
        raise ValueError(f"token_indices must be positions >= 1 (0 is the start token); got {out}")
    return out
