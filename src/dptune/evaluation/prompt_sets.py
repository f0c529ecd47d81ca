"""Prompt sets for generative evaluation: the registered worlds' sets and loaders for public benchmark files.

dptune ships no third-party prompt file (this checkout has no offline copy of them); the loaders read the
documented formats from a path you provide (see docs/evaluation.md for where to get each file):

============== ============================================ ==============================================
name           file                                          category of each prompt
============== ============================================ ==============================================
geneval        ``evaluation_metadata.jsonl`` ({tag, prompt,  ``tag``; the full record is kept for the
               include, exclude?})                           GenEval rules (:mod:`dptune.evaluation.geneval`)
t2i-compbench  ``<category>_val.txt`` (one prompt a line)    the file name's prefix (color, spatial, ...)
cc500          ``CC-500.txt`` (lines 1-446 are CC-500)       ``cc500``
abc6k          ``ABC-6K.txt`` (one prompt a line)            ``abc6k``
parti          ``PartiPrompts.tsv`` (Prompt, Category, ...)  ``Category`` (``Challenge`` kept in meta)
coco-nss1k     ``five_category.json`` (list of {captions,    numeral / spatial / semantic / mixed /
               name})                                        non-relation by position (943 entries)
drawbench      csv/tsv with a ``Prompt(s)`` column           ``Category`` column if present
txt            any text file, one prompt a line              ``all``
============== ============================================ ==============================================

A prompt-set spec is the name of a set a world registers (``shapesworld-id`` / ``shapesworld-ood``; see
:mod:`dptune.plugins`), ``FORMAT:PATH`` or just ``PATH`` (format guessed from the name and extension).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from dptune.data.eval_items import PromptRecord, PromptSet

FORMATS = ("geneval", "t2i-compbench", "cc500", "abc6k", "parti", "coco-nss1k", "drawbench", "txt")
CC500_LINES = 446
# COCO-NSS1K categories by position in five_category.json (LayoutLLM-T2I evaluation script).
NSS1K_RANGES = (
    ("numeral", 0, 155),
    ("spatial", 155, 355),
    ("semantic", 355, 555),
    ("mixed", 555, 743),
    ("non-relation", 743, 943),
)


class PromptFileError(ValueError):
    """A prompt file is missing or not in the expected format."""


def _need_file(path: str | os.PathLike, fmt: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise PromptFileError(
            f"{fmt} prompt file {p} does not exist; dptune ships no third-party prompt "
            "files -- download it (see docs/evaluation.md) and pass its path"
        )
    return p


def _lines(p: Path) -> list[str]:
    return [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]


def load_geneval(path: str | os.PathLike) -> list[PromptRecord]:
    p = _need_file(path, "GenEval")
    out = []
    for i, line in enumerate(_lines(p)):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise PromptFileError(f"{p}:{i + 1} is not JSON ({e}); expected evaluation_metadata.jsonl") from e
        if not isinstance(rec, dict) or "prompt" not in rec or "tag" not in rec:
            raise PromptFileError(
                f"{p}:{i + 1} lacks 'prompt'/'tag'; expected GenEval evaluation_metadata.jsonl"
            )
        out.append(PromptRecord(str(rec["prompt"]), str(rec["tag"]), {"geneval": rec}))
    return out


def load_t2i_compbench(path: str | os.PathLike) -> list[PromptRecord]:
    p = _need_file(path, "T2I-CompBench")
    stem = p.stem
    category = stem[: -len("_val")] if stem.endswith("_val") else stem
    return [PromptRecord(t, category) for t in _lines(p)]


def load_cc500(path: str | os.PathLike) -> list[PromptRecord]:
    """The first 446 prompts of ``CC-500.txt`` (the file has more lines; only 1-446 are CC-500)."""
    p = _need_file(path, "CC-500")
    return [PromptRecord(t, "cc500") for t in _lines(p)[:CC500_LINES]]


def load_abc6k(path: str | os.PathLike) -> list[PromptRecord]:
    return [PromptRecord(t, "abc6k") for t in _lines(_need_file(path, "ABC-6K"))]


def load_txt(path: str | os.PathLike) -> list[PromptRecord]:
    return [PromptRecord(t, "all") for t in _lines(_need_file(path, "text"))]


def _table(p: Path) -> list[dict[str, str]]:
    text = p.read_text(encoding="utf-8")
    delim = "\t" if p.suffix.lower() == ".tsv" or "\t" in text.splitlines()[0] else ","
    return list(csv.DictReader(text.splitlines(), delimiter=delim))


def _column(rows: list[dict[str, str]], names: tuple[str, ...]) -> str | None:
    cols = {c.strip().lower(): c for c in (rows[0].keys() if rows else [])}
    return next((cols[n] for n in names if n in cols), None)


def load_parti(path: str | os.PathLike) -> list[PromptRecord]:
    p = _need_file(path, "PartiPrompts")
    rows = _table(p)
    col = _column(rows, ("prompt",))
    if col is None:
        raise PromptFileError(
            f"{p} has no 'Prompt' column; expected PartiPrompts.tsv (Prompt, Category, ...)"
        )
    cat, chal = _column(rows, ("category",)), _column(rows, ("challenge",))
    return [
        PromptRecord(
            r[col].strip(),
            (r[cat] or "all").strip() if cat else "all",
            {"challenge": r[chal]} if chal else {},
        )
        for r in rows
        if r[col].strip()
    ]


def load_drawbench(path: str | os.PathLike) -> list[PromptRecord]:
    p = _need_file(path, "DrawBench")
    rows = _table(p)
    col = _column(rows, ("prompt", "prompts", "text"))
    if col is None:
        raise PromptFileError(
            f"{p} has no 'Prompt'/'Prompts' column; export DrawBench as csv/tsv with a header"
        )
    cat = _column(rows, ("category",))
    return [
        PromptRecord(r[col].strip(), (r[cat] or "all").strip() if cat else "all")
        for r in rows
        if r[col] and r[col].strip()
    ]


def load_coco_nss1k(path: str | os.PathLike) -> list[PromptRecord]:
    """``five_category.json``: a list of {captions, name}; categories by position when it has 943 entries."""
    p = _need_file(path, "COCO-NSS1K")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise PromptFileError(f"{p} is not JSON ({e}); expected LayoutLLM-T2I's five_category.json") from e
    if not isinstance(data, list) or not all(isinstance(r, dict) and "captions" in r for r in data):
        raise PromptFileError(
            f"{p} must be a JSON list of {{'captions': ..., 'name': ...}} (five_category.json)"
        )
    full = len(data) == NSS1K_RANGES[-1][2]
    out = []
    for i, rec in enumerate(data):
        cap = rec["captions"][0] if isinstance(rec["captions"], list) else rec["captions"]
        cat = next(c for c, a, b in NSS1K_RANGES if a <= i < b) if full else "all"
        out.append(PromptRecord(" ".join(str(cap).split()), cat, {"coco_file": rec.get("name")}))
    return out


LOADERS = {
    "geneval": load_geneval,
    "t2i-compbench": load_t2i_compbench,
    "cc500": load_cc500,
    "abc6k": load_abc6k,
    "parti": load_parti,
    "coco-nss1k": load_coco_nss1k,
    "drawbench": load_drawbench,
    "txt": load_txt,
}


def guess_format(path: str | os.PathLike) -> str:
    """Format from the file name: *.jsonl -> geneval, *.tsv -> parti, *.json -> coco-nss1k, ..."""
    p = Path(path)
    name = p.name.lower()
    if name.endswith(".jsonl"):
        return "geneval"
    if "partiprompts" in name or (name.endswith(".tsv") and "draw" not in name):
        return "parti"
    if name.endswith(".json"):
        return "coco-nss1k"
    if "drawbench" in name or name.endswith(".csv"):
        return "drawbench"
    if name.startswith("cc-500") or name.startswith("cc500"):
        return "cc500"
    if name.startswith("abc-6k") or name.startswith("abc6k"):
        return "abc6k"
    if name.endswith("_val.txt"):
        return "t2i-compbench"
    return "txt"


def load_prompt_set(
    spec: str, n_per_category: int = 8, seed: int = 0, max_prompts: int | None = None
) -> PromptSet:
    """Resolve a prompt-set spec (see the module docstring); ``max_prompts`` keeps the first N of a file.

    A world's set is built with ``n_per_category`` prompts per category from ``seed``.
    """
    from dptune.plugins import prompt_set_names, world_of_prompt_set, worlds

    world = world_of_prompt_set(spec)
    if world is not None:
        return world.prompt_sets[spec](n_per_category, seed)
    fmt, _, path = spec.partition(":") if spec.split(":", 1)[0] in FORMATS else ("", "", spec)
    if not fmt and spec.split("-", 1)[0] in worlds() and not Path(spec).exists():  # e.g. 'shapesworld-odd'
        raise PromptFileError(f"unknown prompt set {spec!r}; the registered sets are {prompt_set_names()}")
    fmt = fmt or guess_format(path)
    prompts = LOADERS[fmt](path)[:max_prompts]
    if not prompts:
        raise PromptFileError(f"{path} holds no prompts (format {fmt}); check the file")
    name = f"{fmt}:{Path(path).stem}"
    return PromptSet(name, prompts, str(Path(path).expanduser()), fmt)


__all__ = [
    "FORMATS", "LOADERS", "PromptFileError", "PromptRecord", "PromptSet", "guess_format", "load_abc6k",
    "load_cc500", "load_coco_nss1k", "load_drawbench", "load_geneval", "load_parti", "load_prompt_set",
    "load_t2i_compbench", "load_txt",
]
