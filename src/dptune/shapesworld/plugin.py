"""Registers the ShapesWorld world with :mod:`dptune.plugins` (entry point ``dptune.worlds: shapesworld``).

Everything here is a thin, lazily importing hook: loading the registry does not import torch or render.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from dptune.plugins import World, register_world

NAME = "shapesworld"
SPLITS = ("id", "ood")
# Prompt sets: the splits plus 'paraphrase' (the ID prompts in wordings the U-Net never trained on).
PROMPT_SPLITS = (*SPLITS, "paraphrase")
# The shipped model's training-validation sampling setting. 'tiny-random' (the backbone's random test SD)
# speaks the same words and is evaluated on these prompt sets, so it gets the same cheap default.
SAMPLING = (25, 4.0)


def shipped_model() -> Path:
    """Folder of the shipped tiny ShapesWorld SD: in the package, else in the source checkout's models/."""
    package = Path(__file__).resolve().parent.parent  # src/dptune
    candidates = [package / "assets" / "shapesworld-sd", package.parent.parent / "models" / "shapesworld-sd"]
    return next((c for c in candidates if (c / "model_index.json").is_file()), candidates[-1])


def train_datasets(cfg, image_size: int):
    """(train, validation): rendered training compositions; validation = held-out seeds of ID compositions.
    ShapesWorld renders at its own size (32 px), so ``image_size`` is not used."""
    from dptune.shapesworld.dataset import ShapesWorldDataset

    return (ShapesWorldDataset("train", size=cfg.data_size, seed=cfg.seed),
            ShapesWorldDataset("id", size=cfg.val_size, seed=10_000 + cfg.seed))


def prompt_set(split: str, n_per_category: int, seed: int = 0):
    from dptune.shapesworld.eval_hooks import shapesworld_set

    return shapesworld_set(split, n_per_category, seed)


def disc_set(split: str, n_items: int, noise_seed: int = 0):
    """(ITM items, REC items) of a split: ``n_items`` per direction (ITM) and ``n_items`` REC items."""
    from dptune.shapesworld.disc_items import shapesworld_itm_items, shapesworld_rec_items

    return shapesworld_itm_items(split, n_items, noise_seed), shapesworld_rec_items(split, n_items, noise_seed)


def judge_scorer(images, prompts):
    from dptune.shapesworld.eval_hooks import judge_scorer as scorer

    return scorer(images, prompts)


def generation_validation(pipe, n_per_category: int, steps: int, guidance: float, seed: int = 0) -> dict:
    from dptune.shapesworld.eval_hooks import generation_alignment

    return generation_alignment(pipe, n_per_category, steps, guidance, seed)


def edit_pairs(n_per_edit: int = 64) -> dict[str, list]:
    from dptune.shapesworld.eval_hooks import shapesworld_edit_pairs

    return shapesworld_edit_pairs(n_per_edit)


def world() -> World:
    return World(
        name=NAME,
        summary="synthetic 32x32 shapes with exact hard negatives, ID/OOD splits and an exact judge",
        train_datasets=train_datasets,
        models={NAME: shipped_model},
        model_hints={NAME: "`dptune shapesworld train-base --out models/shapesworld-sd`"},
        sampling_defaults={NAME: SAMPLING, "tiny-random": SAMPLING},
        prompt_sets={f"{NAME}-{s}": partial(prompt_set, s) for s in PROMPT_SPLITS},
        scorers={"judge": judge_scorer},
        disc_sets={f"{NAME}-{s}": partial(disc_set, s) for s in SPLITS},
        generation_validation=generation_validation,
        edit_pairs=edit_pairs,
    )


def register() -> None:
    register_world(world())
