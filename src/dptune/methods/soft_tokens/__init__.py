"""SoftREPA and AGSM: reward-free contrastive soft tokens on a frozen denoiser (see docs/soft_tokens.md).

Injection (:mod:`.inject`), token files (:mod:`.tokens`), losses (:mod:`.losses`), objectives
(:mod:`.objective`), training on the shared trainer (:mod:`.training`) and the registered methods
``softrepa`` / ``agsm`` (:mod:`.methods`).
"""

from dptune.methods.soft_tokens.methods import register

__all__ = ["register"]
