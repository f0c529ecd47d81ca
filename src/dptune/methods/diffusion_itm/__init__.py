"""DiffusionITM / HN-DiffusionITM (Krojer et al., NeurIPS 2023): Stable Diffusion as an image-text scorer."""

from dptune.methods.diffusion_itm.method import HNDiffusionITMConfig, HNDiffusionITMGenerator, register
from dptune.methods.diffusion_itm.scorer import DEFAULT_TIMESTEPS, CleanLatents, DiffusionITMScorer
from dptune.methods.diffusion_itm.training import HNObjective, HNTrainConfig, hn_loss, train_hn

__all__ = ["DEFAULT_TIMESTEPS", "CleanLatents", "DiffusionITMScorer", "HNDiffusionITMConfig",
           "HNDiffusionITMGenerator", "HNObjective", "HNTrainConfig", "hn_loss", "register", "train_hn"]
