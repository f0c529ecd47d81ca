"""The world registry: datasets, shipped models, prompt sets, scorers and item sets plug in here.

A *world* is a source of training data and evaluation material (``shapesworld``, ``coco``). Generic code
(backbone, training, evaluation) asks the registry for what a world provides instead of importing the world,
so adding a world never touches the layers below it. Worlds are found through the entry-point group
``dptune.worlds`` (each entry point is a ``register()`` function that calls :func:`register_world`) and can
also be registered at run time, e.g. by a test or a notebook.

Every hook is a plain callable that imports its world lazily, so loading the registry stays cheap.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

ENTRY_POINT_GROUP = "dptune.worlds"
# The worlds shipped in this package, by entry point; loaded from here too when the installed metadata
# predates them (a stale editable install), so a source checkout never loses its built-in worlds.
BUILTIN_WORLDS = {"shapesworld": "dptune.shapesworld.plugin:register", "coco": "dptune.data.plugin:register"}


@dataclass(frozen=True, eq=False)  # compared by identity: the registry holds one object per name
class World:
    """What one world contributes; every hook is optional."""

    name: str  # "shapesworld", "coco"
    summary: str  # one line, shown by listings and error messages
    # (train_cfg, image_size) -> (train_dataset, val_dataset) of DPTSample
    train_datasets: Callable | None = None
    # shipped model alias -> () -> folder (a diffusers pipeline folder with model_index.json)
    models: Mapping[str, Callable[[], Path]] = field(default_factory=dict)
    # shipped model alias -> how to rebuild it when its folder is missing (quoted by the loader's error)
    model_hints: Mapping[str, str] = field(default_factory=dict)
    # model alias -> (sampling steps, guidance scale) that suit it
    sampling_defaults: Mapping[str, tuple[int, float]] = field(default_factory=dict)
    # prompt-set name -> fn(n_per_category, seed) -> PromptSet
    prompt_sets: Mapping[str, Callable] = field(default_factory=dict)
    # scorer name -> fn(uint8 images (B, H, W, 3), prompt records) -> [dict(score=...)], for this world's sets
    scorers: Mapping[str, Callable] = field(default_factory=dict)
    # discriminative set name -> fn(n_items, noise_seed) -> (ITM items, REC items)
    disc_sets: Mapping[str, Callable] = field(default_factory=dict)
    # (StableDiffusionPipeline, n_per_category, steps, guidance, seed) -> {"gen_<category>": accuracy}
    generation_validation: Callable | None = None
    # fn(n_per_edit) -> {edit kind: [(caption, edited caption)]} for the text-encoder check
    edit_pairs: Callable | None = None

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str) or self.name != self.name.strip():
            raise ValueError(f"a world needs a non-empty name without surrounding spaces, got {self.name!r}")
        for attr in ("models", "model_hints", "sampling_defaults", "prompt_sets", "scorers", "disc_sets"):
            object.__setattr__(self, attr, MappingProxyType(dict(getattr(self, attr))))


_WORLDS: dict[str, World] = {}
_loaded = False


def register_world(world: World) -> None:
    """Add (or replace, by name) a world. Its prompt-set, disc-set and model names must not clash with
    another world's: a name has to resolve to one world."""
    if not isinstance(world, World):
        raise TypeError(f"register_world takes a dptune.plugins.World, got {type(world).__name__}")
    for other in _WORLDS.values():
        if other.name == world.name:
            continue
        for what in ("prompt_sets", "disc_sets", "models"):
            clash = sorted(set(getattr(world, what)) & set(getattr(other, what)))
            if clash:
                raise ValueError(
                    f"world {world.name!r} registers {what} {clash} that world {other.name!r} already owns; "
                    "rename them (prefix them with the world's name)"
                )
    _WORLDS[world.name] = world


def unregister_world(name: str) -> None:
    """Remove a world registered at run time (no error if absent)."""
    _WORLDS.pop(name, None)


def load_plugins() -> None:
    """Import every ``dptune.worlds`` entry point once (and the built-in worlds missing from them)."""
    global _loaded
    if _loaded:
        return
    _loaded = True  # set first: a plugin that itself queries the registry must not recurse
    from importlib.metadata import entry_points

    targets = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    for name, target in BUILTIN_WORLDS.items():
        targets.setdefault(name, target)
    for name, target in targets.items():
        module, _, attr = target.partition(":")
        try:
            register = getattr(importlib.import_module(module), attr or "register")
        except (ImportError, AttributeError) as e:
            _loaded = False  # fail again on the next call rather than run with a world missing
            raise ImportError(
                f"world plugin {name!r} ({target}) cannot be loaded: {e}; fix or uninstall the package "
                f"that declares it under the entry-point group {ENTRY_POINT_GROUP!r}"
            ) from e
        register()


def worlds() -> dict[str, World]:
    """Every registered world by name."""
    load_plugins()
    return dict(_WORLDS)


def get_world(name: str) -> World:
    """The world called ``name``; unknown -> ValueError listing the registered names."""
    found = worlds().get(name)
    if found is None:
        raise ValueError(
            f"unknown world {name!r}; registered worlds: {sorted(_WORLDS) or 'none'} (a world registers "
            f"itself under the entry-point group {ENTRY_POINT_GROUP!r} or with dptune.plugins.register_world)"
        )
    return found


def world_of_prompt_set(spec: str) -> World | None:
    """The world that provides the prompt set ``spec`` (e.g. 'shapesworld-id'), or None."""
    return next((w for w in worlds().values() if spec in w.prompt_sets), None)


def world_of_disc_set(name: str) -> World | None:
    """The world that provides the discriminative item set ``name``, or None."""
    return next((w for w in worlds().values() if name in w.disc_sets), None)


def world_of_model(alias: str) -> World | None:
    """The world that ships the model ``alias``, or None."""
    return next((w for w in worlds().values() if alias in w.models), None)


def prompt_set_names() -> list[str]:
    return sorted(n for w in worlds().values() for n in w.prompt_sets)


def disc_set_names() -> list[str]:
    return sorted(n for w in worlds().values() for n in w.disc_sets)


def shipped_models() -> dict[str, Path]:
    """Model alias -> folder of every model a registered world ships."""
    return {alias: Path(locate()) for w in worlds().values() for alias, locate in w.models.items()}


def sampling_defaults(model: str) -> tuple[int, float] | None:
    """(steps, guidance) a world recommends for ``model`` (an alias), or None."""
    for w in worlds().values():
        if model in w.sampling_defaults:
            steps, guidance = w.sampling_defaults[model]
            return int(steps), float(guidance)
    return None
