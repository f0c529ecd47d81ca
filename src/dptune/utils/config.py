"""Typed configs: dataclasses whose fields carry ``help`` metadata and validate in ``__post_init__``.

``to_dict``/``from_dict`` round-trip through JSON; ``load_config_file`` reads YAML or JSON so every CLI
command accepts ``--config FILE`` and the resolved config is saved beside every checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def field(default: Any = dataclasses.MISSING, *, help: str, **kwargs: Any) -> Any:  # noqa: A002
    """A dataclass field with a help string (shown by the CLI, checked by tests)."""
    if isinstance(default, list | dict | set):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata={"help": help}, **kwargs)
    return dataclasses.field(default=default, metadata={"help": help}, **kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def from_dict(cls: type[T], data: dict[str, Any]) -> T:
    """Build ``cls`` from a dict, rejecting unknown keys with the list of valid ones."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} option(s) {unknown}; valid options: {sorted(names)}")
    return cls(**data)


def require_positive(cfg: Any, names: tuple[str, ...]) -> None:
    """Raise ``ValueError`` naming the first option of ``names`` that is not > 0."""
    for name in names:
        if getattr(cfg, name) <= 0:
            raise ValueError(f"{name}={getattr(cfg, name)} must be > 0")


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON config file into a dict."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text) or {}
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a mapping of option: value")
    return data


def help_of(cls: type, name: str) -> str:
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.metadata.get("help", "")
    raise KeyError(name)


def parse_annotation(annotation: str):
    """(python type, is_list, optional) from a dataclass field's string annotation."""
    text = str(annotation).replace(" ", "")
    optional = text.endswith("|None")
    text = text.removesuffix("|None")
    if text.startswith("list["):
        return {"str": str, "int": int, "float": float}[text[5:-1]], True, optional
    return {"int": int, "float": float, "str": str, "bool": bool, "dict": dict}[text], False, optional


def add_dataclass_args(parser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """Add ``--field-name`` options for every field of ``cls`` (help from the field metadata).

    Defaults are suppressed so :func:`merge_config` can tell flags the user gave from ones they did not.
    """
    import argparse

    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        typ, is_list, _ = parse_annotation(f.type)
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        helptext = f"{f.metadata.get('help', '')} (default: {default})"
        kw: dict[str, Any] = dict(dest=f.name, default=argparse.SUPPRESS, help=helptext)
        if typ is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif typ is dict:
            parser.add_argument(flag, type=json.loads, metavar="JSON", **kw)
        elif is_list:
            parser.add_argument(flag, type=typ, nargs="+", metavar=typ.__name__.upper(), **kw)
        else:
            parser.add_argument(flag, type=typ, metavar=typ.__name__.upper(), **kw)


def merge_config(cls: type[T], args, defaults: dict[str, Any] | None = None, file: str | None = None) -> T:
    """Build ``cls`` from: dataclass defaults < ``defaults`` < config ``file`` < flags given on the CLI."""
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    data: dict[str, Any] = dict(defaults or {})
    if file:
        data.update(load_config_file(file))
    data.update({k: v for k, v in vars(args).items() if k in names})
    return from_dict(cls, data)
