"""dptune: Discriminative Probing and Tuning (DPT, Qu et al., CVPR 2024) for Stable Diffusion.

Importing the package is cheap: heavy modules (torch, diffusers) load only when a submodule needs them.
Layers, in data-flow order: ``backbone`` (load SD, feature taps) -> ``adapter`` (discriminative adapter and
heads) -> ``losses`` (one function per paper equation) -> ``training`` (stage 1 probing, stage 2 tuning) ->
``sampling`` (self-correction) -> ``evaluation`` -> ``methods`` (sibling methods) -> ``cli``.
"""

__version__ = "0.1.0"
