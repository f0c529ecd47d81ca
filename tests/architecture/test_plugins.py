"""The world registry: entry points, run-time registration, and the generic code that resolves through it."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path
from types import SimpleNamespace

import pytest

from dptune import plugins
from dptune.data.eval_items import PromptRecord, PromptSet
from dptune.plugins import World, get_world, register_world, unregister_world


@pytest.fixture
def toy_world():
    """A world registered at run time (and removed afterwards)."""
    made = []

    def prompts(n_per_category: int, seed: int = 0) -> PromptSet:
        made.append((n_per_category, seed))
        recs = [PromptRecord(f"toy {seed} {i}", "toys") for i in range(n_per_category)]
        return PromptSet("toy-all", recs, "test", "toy")

    world = World(
        name="toy",
        summary="a test world",
        train_datasets=lambda cfg, size: (["train", cfg.seed, size], ["val"]),
        models={"toy-model": lambda: Path("nowhere") / "toy-sd"},
        model_hints={"toy-model": "run `make toy`"},
        sampling_defaults={"toy-model": (7, 2.5)},
        prompt_sets={"toy-all": prompts},
        disc_sets={"toy-disc": lambda n, seed: ([n], [seed])},
        generation_validation=lambda pipe, n, steps, guidance, seed: {"gen_overall": n * steps + seed},
    )
    register_world(world)
    yield world, made
    unregister_world("toy")


def test_entry_points_register_shapesworld_and_coco():
    declared = {ep.name: ep.value for ep in entry_points(group=plugins.ENTRY_POINT_GROUP)}
    ours = {"shapesworld": "dptune.shapesworld.plugin:register", "coco": "dptune.data.plugin:register"}
    assert declared.items() >= ours.items()  # other installed packages may add worlds
    assert {"shapesworld", "coco"} <= set(plugins.worlds())
    sw = get_world("shapesworld")
    assert set(sw.prompt_sets) == {"shapesworld-id", "shapesworld-ood", "shapesworld-paraphrase"}
    assert set(sw.disc_sets) == {"shapesworld-id", "shapesworld-ood"}  # paraphrases change prompts, not items
    assert "judge" in sw.scorers and sw.generation_validation is not None and sw.edit_pairs is not None
    assert get_world("coco").train_datasets is not None and not get_world("coco").prompt_sets
    assert plugins.world_of_prompt_set("shapesworld-ood") is sw and plugins.world_of_disc_set("shapesworld-id") is sw
    assert plugins.world_of_prompt_set("geneval:x.jsonl") is None
    assert plugins.sampling_defaults("shapesworld") == (25, 4.0) and plugins.sampling_defaults("sd-x") is None
    assert plugins.shipped_models()["shapesworld"].name == "shapesworld-sd"


def test_unknown_world_lists_the_registered_ones():
    with pytest.raises(ValueError, match=r"unknown world 'mars'.*'coco'.*'shapesworld'"):
        get_world("mars")


def test_world_validation_and_name_clashes(toy_world):
    with pytest.raises(ValueError, match="non-empty name"):
        World(name=" ", summary="x")
    with pytest.raises(TypeError, match="World"):
        register_world({"name": "dict-world"})
    with pytest.raises(ValueError, match=r"prompt_sets \['toy-all'\].*'toy' already owns"):
        register_world(World(name="copycat", summary="x", prompt_sets={"toy-all": lambda n, s: None}))
    assert "copycat" not in plugins.worlds()
    world, _ = toy_world
    with pytest.raises(TypeError):
        world.prompt_sets["other"] = None  # read-only: a world cannot be changed behind the registry's back


def test_a_toy_world_registered_at_run_time_is_found(toy_world):
    from dptune.evaluation.disc_items import world_items
    from dptune.evaluation.prompt_sets import PromptFileError, load_prompt_set

    world, made = toy_world
    assert get_world("toy") is world and plugins.world_of_model("toy-model") is world
    pset = load_prompt_set("toy-all", n_per_category=3, seed=5)
    assert made == [(3, 5)] and [p.text for p in pset.prompts] == ["toy 5 0", "toy 5 1", "toy 5 2"]
    with pytest.raises(PromptFileError, match="toy-all"):  # a mistyped set of a known world is named
        load_prompt_set("toy-none")
    assert world_items("toy-disc", 4, noise_seed=9) == ([4], [9])
    assert plugins.sampling_defaults("toy-model") == (7, 2.5)


def test_training_resolves_data_and_validation_through_the_registry(toy_world):
    from dptune.training.data import build_datasets
    from dptune.training.validation import generation_alignment

    cfg = SimpleNamespace(data="toy", seed=3, gen_val_prompts=2, gen_val_steps=10, gen_val_guidance=1.0)
    assert build_datasets(cfg, 64) == (["train", 3, 64], ["val"])
    bb = SimpleNamespace(vae=None, text_encoder=None, tokenizer=None, unet=None, scheduler=None)
    with pytest.raises(ValueError, match=r"unknown data 'mars'.*'toy'"):
        build_datasets(SimpleNamespace(data="mars"), 64)
    register_world(World(name="empty", summary="nothing"))
    try:
        with pytest.raises(ValueError, match=r"provides no training data; train on one of \['coco', 'shapesworld'"):
            build_datasets(SimpleNamespace(data="empty"), 64)
    finally:
        unregister_world("empty")
    cfg.gen_val_prompts = 0  # off: the hook is never called (and no pipeline is built)
    assert generation_alignment(cfg, bb) == {}
    cfg.data = "coco"  # a world without a generation hook
    cfg.gen_val_prompts = 2
    assert generation_alignment(cfg, bb) == {}


def test_generation_alignment_calls_the_hook_with_a_ddim_pipeline(toy_world, tiny_backbone):
    from diffusers import DDIMScheduler

    from dptune.training.validation import generation_alignment

    seen = {}

    def hook(pipe, n, steps, guidance, seed):
        seen.update(scheduler=type(pipe.scheduler), unet=pipe.unet, args=(n, steps, guidance, seed))
        return {"gen_overall": 0.5}

    register_world(World(name="hooked", summary="x", generation_validation=hook))
    try:
        cfg = SimpleNamespace(data="hooked", seed=4, gen_val_prompts=2, gen_val_steps=3, gen_val_guidance=1.5)
        assert generation_alignment(cfg, tiny_backbone) == {"gen_overall": 0.5}
    finally:
        unregister_world("hooked")
    assert seen["scheduler"] is DDIMScheduler and seen["unet"] is tiny_backbone.unet  # the backbone's own modules
    assert seen["args"] == (2, 3, 1.5, 4)


def test_shipped_model_aliases_come_from_the_registry(toy_world, monkeypatch):
    from dptune.backbone import ModelNotFoundError, resolve_model

    with pytest.raises(ModelNotFoundError, match=r"shipped model 'toy-model' is missing.*run `make toy`"):
        resolve_model("toy-model")
    with pytest.raises(ModelNotFoundError, match=r"'shapesworld'.*'toy-model'"):  # the hint lists the aliases
        resolve_model("  ")


def test_builtin_worlds_load_without_entry_point_metadata(monkeypatch):
    """A checkout whose installed metadata predates the entry points still has its built-in worlds."""
    import importlib.metadata

    saved = dict(plugins._WORLDS)
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group=None: [])
    monkeypatch.setattr(plugins, "_loaded", False)
    plugins._WORLDS.clear()
    try:
        assert {"shapesworld", "coco"} <= set(plugins.worlds())
    finally:
        plugins._WORLDS.clear()
        plugins._WORLDS.update(saved)


def test_a_broken_plugin_is_named(monkeypatch):
    import importlib.metadata

    fake = SimpleNamespace(name="broken", value="dptune.no_such_module:register")
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group=None: [fake])
    monkeypatch.setattr(plugins, "_loaded", False)
    saved = dict(plugins._WORLDS)
    try:
        with pytest.raises(ImportError, match=r"world plugin 'broken' \(dptune.no_such_module:register\)"):
            plugins.load_plugins()
        with pytest.raises(ImportError, match="broken"):  # not silently half-loaded on the next call
            plugins.worlds()
    finally:
        plugins._WORLDS.clear()
        plugins._WORLDS.update(saved)
        plugins._loaded = True


def test_shapesworld_generation_validation_on_the_tiny_model(tiny_backbone):
    """The registered hook end to end: gen_<category> judge accuracies of images from the backbone."""
    from dptune.training.validation import generation_alignment

    cfg = SimpleNamespace(data="shapesworld", seed=0, gen_val_prompts=1, gen_val_steps=2, gen_val_guidance=2.0)
    metrics = generation_alignment(cfg, tiny_backbone)
    assert set(metrics) == {"gen_colour", "gen_count", "gen_binding", "gen_relation", "gen_overall"}
    assert all(0.0 <= v <= 1.0 for v in metrics.values())
    assert generation_alignment(cfg, tiny_backbone) == metrics  # seeded: the same images, the same verdicts
