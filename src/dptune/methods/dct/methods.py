"""The registered method ``dct``: its generator (``generator.py``), trainer (``run.py``) and demo hook (``demo.py``)."""

from __future__ import annotations

from dptune.methods.dct.generator import DCTConfig, DCTGenerator, with_token
from dptune.methods.registry import DemoSetup, Method, MethodRun, parse_method, register_method

TRAINED_BY = "dptune train dct --classifier shapesworld-count --target 3"


def demo(setup: DemoSetup) -> list[MethodRun]:
    """Train a count-3 token on the demo model (about two minutes on 2 cores; a few steps when quick), measure
    the judge's accuracy on count-3 prompts before and after on evaluation seeds, and return the ``dct`` row."""
    from dptune.methods.dct.demo import run_demo_hook

    tokens = run_demo_hook(setup)
    return [parse_method("dct", {"tokens": str(tokens)})]


def register() -> None:
    from dptune.methods.dct.config import DCTTrainConfig
    from dptune.methods.dct.run import train_dct

    register_method(Method(
        "dct", "a class token learned from a frozen classifier (non-invasive: the model stays frozen)",
        DCTConfig, lambda cfg, ctx: DCTGenerator(cfg, ctx), train=train_dct, weights=("tokens",),
        trained_by=TRAINED_BY, paper="Discriminative Class Tokens (Schwartz et al., ICCV 2023)",
        train_config=DCTTrainConfig, demo=demo))


__all__ = ["DCTConfig", "DCTGenerator", "register", "with_token"]
