"""Reading third-party annotation files with errors that name the file, the record and the fix.

Everything here raises :class:`DataFormatError` (a ``ValueError``) or ``FileNotFoundError`` so the CLI prints
one line instead of a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any


class DataFormatError(ValueError):
    """An annotation or index file does not have the expected format."""


def require_file(path: str | Path, what: str, fix: str) -> Path:
    """Return ``path`` as a Path or raise FileNotFoundError saying what was expected and how to get it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist; {fix}")
    return path


def read_json(path: str | Path, what: str, fix: str) -> Any:
    """Parse a JSON file; missing or malformed files raise one clear error naming ``what`` it should be."""
    path = require_file(path, what, fix)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DataFormatError(
            f"{what} {path} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); "
            f"the file is truncated or corrupt, download or re-create it"
        ) from e
    except UnicodeDecodeError as e:
        raise DataFormatError(f"{what} {path} is not UTF-8 text ({e}); pass the JSON file, not an archive") from e


def require_keys(record: Any, keys: Iterable[str], where: str, fix: str) -> Mapping[str, Any]:
    """Check ``record`` is a mapping holding ``keys``; ``where`` names the record (file + index/id)."""
    if not isinstance(record, Mapping):
        raise DataFormatError(f"{where} is a {type(record).__name__}, expected a JSON object; {fix}")
    missing = [k for k in keys if k not in record]
    if missing:
        raise DataFormatError(f"{where} lacks key(s) {missing}; {fix}")
    return record


def check_format(data: Any, path: str | Path, fmt: str, version: int, fix: str) -> dict[str, Any]:
    """Check a dptune-owned index file carries the expected ``format`` tag and ``version``."""
    if not isinstance(data, dict) or data.get("format") != fmt:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise DataFormatError(f"{path} is not a {fmt} file (format tag {found!r}); {fix}")
    if data.get("version") != version:
        raise DataFormatError(
            f"{path} has {fmt} version {data.get('version')!r}, this dptune reads version {version}; {fix}"
        )
    return data
