"""DCT -- Discriminative Class Tokens (Schwartz et al., ICCV 2023): a frozen classifier teaches one new token.

Modules: ``token`` (the token row, install/restore, textual-inversion export), ``classifiers`` (one interface:
transformers classifiers, the shipped ``shapesworld-count`` CNN (``counter``), EfficientNet-Lite0
(``efficientnet``)), ``sampling`` (differentiable CFG sampling through the last k steps), ``config`` /
``train`` / ``run`` (paper defaults on the shared trainer), ``methods`` (the registered ``dct`` generator),
``worlds`` / ``demo`` (ShapesWorld count prompts, the judge's target accuracy, the demo hook).
"""

from dptune.methods.dct.methods import register

__all__ = ["register"]
