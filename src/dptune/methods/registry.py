"""The method registry: every alignment method is a name, a typed config, a generator and optionally a trainer.

>>> run = parse_method("dpt+sc:eta=0.2,window=0:1", weights={"adapter": "A", "lora": "L"})
>>> generate = run.method.generator(run.config, context)      # images = generate(prompts, seeds)

A method is chosen by name plus ``key=value`` options read from its config dataclass (one parser for all);
weight folders (``adapter``, ``lora``, ``tokens`` ...) not given as options come from ``weights`` (the CLI's
``--adapter``/``--lora`` flags). Third-party methods call :func:`register_method` at import time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dptune.utils.config import parse_annotation, to_dict


@dataclass(frozen=True)
class Method:
    """One registered method.

    ``generator(config, context) -> Generator``: a callable ``(prompts, seeds) -> (B, H, W, 3)`` float images
    in [0, 1] with a ``description`` string (and, for discriminative methods, a ``probe`` attribute).
    ``weights``: config fields naming folders the method cannot run without; ``trained_by``: the command that
    makes them (quoted in the error when they are missing).
    ``train(train_config, progress=True) -> path of the trained weights`` with ``train_config`` an instance of
    the dataclass ``train_config`` (``dptune train NAME`` builds its flags from it).
    ``demo(setup: DemoSetup) -> [MethodRun]``: trains what the method needs for the ShapesWorld demo (within
    its time budget, under ``setup.out_dir / name``) and returns the rows to evaluate; the demo calls every
    registered method's hook, so a new method's row appears without editing the demo.
    """

    name: str
    summary: str
    config: type
    generator: Callable[[Any, Any], Any]
    train: Callable[..., Any] | None = None
    weights: tuple[str, ...] = ()
    trained_by: str = ""
    paper: str = ""  # what the method is, in one phrase (e.g. "DPT stage 2 (Qu et al. 2024)")
    train_config: type | None = None
    demo: Callable[[DemoSetup], list[MethodRun]] | None = None


@dataclass
class DemoSetup:
    """What a method's demo hook gets: where to write, which model, and how much time it may spend."""

    out_dir: Path  # the demo's folder; a method writes under out_dir / <method name>
    model: str  # the model the demo runs on (default: the shipped ShapesWorld SD)
    seed: int = 0
    quick: bool = False  # smoke version (CI): train a few steps only
    progress: bool = True
    weights: dict[str, str] = dataclasses.field(default_factory=dict)  # DPT's stage-2 adapter / lora
    # tables a hook adds to the demo report: {"title", "what", "header": [...], "rows": [[...], ...]}
    notes: list[dict] = dataclasses.field(default_factory=list)


@dataclass
class MethodRun:
    """A method with its resolved config, under a label for tables and folders."""

    label: str
    method: Method
    config: Any

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method.name, "label": self.label, "config": to_dict(self.config)}

    def check_weights(self) -> None:
        """One clear error when a weight folder the method needs is not set or missing on disk."""
        for name in self.method.weights:
            value = getattr(self.config, name)
            how = f" (made by `{self.method.trained_by}`)" if self.method.trained_by else ""
            if value is None:
                raise ValueError(f"method {self.label!r} needs {name} weights{how}: pass --{name} DIR or "
                                 f"'{self.method.name}:{name}=DIR'")
            if value != "random" and not Path(value).expanduser().exists():
                raise FileNotFoundError(f"method {self.label!r}: {name} folder {value} does not exist{how}")


_REGISTRY: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    """Add ``method`` (its config must be a dataclass); re-registering a name replaces it."""
    if not method.name or any(c in method.name for c in ":,= "):
        raise ValueError(f"method name {method.name!r} must be non-empty without ':', ',', '=' or spaces")
    if not dataclasses.is_dataclass(method.config):
        raise TypeError(f"method {method.name}: config must be a dataclass type, got {method.config!r}")
    _REGISTRY[method.name] = method
    return method


def unregister_method(name: str) -> None:
    _REGISTRY.pop(name, None)


def methods() -> dict[str, Method]:
    """Registered methods by name (built-ins are registered when :mod:`dptune.methods` is imported)."""
    return dict(_REGISTRY)


def get_method(name: str) -> Method:
    if name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(sorted(_REGISTRY))} "
                         "(`dptune methods` lists them)")
    return _REGISTRY[name]


def parse_value(cls: type, key: str, text: str) -> Any:
    """Parse option ``key`` of config dataclass ``cls`` from text, by the field's annotation."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if key not in fields:
        raise ValueError(f"unknown option {key!r}; options: {', '.join(fields)}")
    kind = str(fields[key].type).replace(" ", "")
    if text.lower() in ("none", "null") and kind.endswith("|None"):
        return None
    parts = [p for p in text.replace("+", ":").split(":") if p]  # window=0:1, blocks=mid+up1
    if kind.removesuffix("|None").startswith("tuple"):  # numeric tuples (windows, timestep lists)
        return tuple(_number(key, float, p) for p in parts)
    typ, is_list, _ = parse_annotation(kind)  # the CLI's own reading of the annotation
    if typ is bool:
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"option {key} takes true or false; got {text!r}")
        return text.lower() in ("true", "1", "yes")
    if is_list:
        return [_number(key, typ, p) if typ is not str else p for p in parts]
    return _number(key, typ, text) if typ in (int, float) else text


def _number(key: str, typ: type, text: str):
    try:
        return typ(text)
    except ValueError:
        raise ValueError(f"option {key} takes a number; got {text!r}") from None


def parse_method(spec: str, weights: dict[str, str | None] | None = None, label: str | None = None) -> MethodRun:
    """``NAME`` or ``NAME:key=value,key=value`` -> :class:`MethodRun` (the label defaults to ``spec``)."""
    spec = spec.strip()
    name, _, options = spec.partition(":")
    method = get_method(name.strip())
    names = {f.name for f in dataclasses.fields(method.config)}
    values: dict[str, Any] = {k: v for k, v in (weights or {}).items() if k in names and v is not None}
    for part in filter(None, (p.strip() for p in options.split(","))):
        key, sep, text = part.partition("=")
        if not sep:
            raise ValueError(f"method {spec!r}: expected key=value, got {part!r}")
        try:
            values[key.strip()] = parse_value(method.config, key.strip(), text.strip())
        except ValueError as e:
            raise ValueError(f"method {spec!r}: {e}") from None
    try:
        config = method.config(**values)
    except (TypeError, ValueError) as e:
        raise ValueError(f"method {spec!r}: {e}") from None
    return MethodRun(label or spec, method, config)


def option_help(method: Method) -> list[str]:
    """``key (default): help`` lines for ``dptune methods NAME``."""
    out = []
    for f in dataclasses.fields(method.config):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        out.append(f"{f.name} (default {default!r}): {f.metadata.get('help', '')}")
    return out
