"""Alignment methods behind one contract: a registry of name -> (typed config, generator, optional train).

>>> from dptune.methods import GenerationContext, parse_method
>>> run = parse_method("dpt+sc:eta=0.2", weights={"adapter": "runs/tune/final/adapter"})
>>> images = run.method.generator(run.config, GenerationContext("shapesworld"))(["two red circles"], [0])

Built-in methods register on import; see docs/architecture.md for adding one.
"""

from dptune.methods import attend_excite, base, dct, diffusion_itm, dpt, referee, soft_tokens
from dptune.methods.context import GenerationContext, sampling_defaults
from dptune.methods.registry import (
    DemoSetup,
    Method,
    MethodRun,
    get_method,
    methods,
    option_help,
    parse_method,
    parse_value,
    register_method,
    unregister_method,
)

for _module in (base, dpt, dct, soft_tokens, attend_excite, referee, diffusion_itm):
    _module.register()

__all__ = [
    "DemoSetup",
    "GenerationContext",
    "Method",
    "MethodRun",
    "get_method",
    "methods",
    "option_help",
    "parse_method",
    "parse_value",
    "register_method",
    "sampling_defaults",
    "unregister_method",
]
