"""``referee``: generation as inversion of a discriminative vision-language model (Liu et al., ICML 2024).

Training-free: the SD latent itself is optimised so that a referee judges the decoded image as matching the
prompt (augmented views, hardest kept), optionally with score distillation from the SD model.

* :mod:`.referees` -- the referee interface, ensembles and spec parsing; :mod:`.hf_referees` (CLIP, BLIP-2),
  :mod:`.dpt_referee` (the DPT adapter), :mod:`.shapes_referee` (the shipped ShapesWorld dual encoder,
  model in :mod:`.shapes_model`, trained by :mod:`.shapes_train`: ``dptune train referee``);
* :mod:`.augment` (kornia views), :mod:`.sds` (SDS term), :mod:`.inversion` (the loop);
* :mod:`.method` -- the registered method, its generator and demo rows. Docs: docs/referee.md.
"""

from __future__ import annotations

from dptune.methods.referee.method import RefereeConfig, RefereeGenerator, demo_runs, make_generator
from dptune.methods.referee.referees import Ensemble, Referee, load_referee


def _train(cfg, progress: bool = True):
    from dptune.methods.referee.shapes_train import train_referee

    return train_referee(cfg, progress=progress)


def register() -> None:
    from dptune.methods.referee.shapes_train import RefereeTrainConfig
    from dptune.methods.registry import Method, register_method

    register_method(Method(
        "referee", "generation as inversion of a discriminative referee (BLIP-2 / CLIP / DPT adapter / the shipped "
        "ShapesWorld referee) with augmented views and optional SDS; training-free and slow by design "
        "(every image is an optimisation)", RefereeConfig, make_generator, train=_train,
        trained_by="dptune train referee", paper="Liu et al., ICML 2024 (Referee can play)",
        train_config=RefereeTrainConfig, demo=demo_runs))


__all__ = ["Ensemble", "Referee", "RefereeConfig", "RefereeGenerator", "load_referee", "register"]
