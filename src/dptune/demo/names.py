"""Names the demo's runner and its report share: the evaluated methods and the evaluation folder.

Kept apart from ``run.py`` so that the report can name methods without importing the runner (which imports
the report).
"""

from __future__ import annotations

BASE = "base"  # the frozen model
DPT = "dpt"  # stage-2 LoRA + adapter, plain sampling
DPT_SC = "dpt+sc"  # DPT + self-correction (paper Eq. 9)
GROUNDED_SC = "dpt+gsc"  # the extension: self-correction on the REC boxes of relation prompts
SC_CURVE_PREFIX = "dpt+sc eta "  # method names of the self-correction strength curve's extra points
EVAL_DIR = "eval"  # the demo's evaluation folder under its out dir: image paths are relative to it
