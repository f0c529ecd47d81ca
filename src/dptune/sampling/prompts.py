"""Prompt lists for generation: text or JSONL files, (prompt x seed) jobs, tokenizer-length checks."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

JSON_KEYS = ("prompt", "text", "caption")


@dataclass(frozen=True)
class Job:
    """One image to generate."""

    prompt_index: int
    prompt: str
    seed: int

    @property
    def stem(self) -> str:
        return f"{self.prompt_index:05d}_s{self.seed}"


def read_prompts(path: str | os.PathLike) -> list[str]:
    """One prompt per line (blank lines skipped), or JSONL with a "prompt" / "text" / "caption" field."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"prompt file {path} does not exist; pass a text file with one prompt per line"
        )
    prompts = []
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        prompts.append(_parse_line(line, path, lineno) if line.startswith("{") else line)
    if not prompts:
        raise ValueError(f"prompt file {path} holds no prompts; write one prompt per line")
    return prompts


def _parse_line(line: str, path: Path, lineno: int) -> str:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise ValueError(
            f"{path}:{lineno} starts with '{{' but is not valid JSON ({e.msg}); fix the line"
        ) from e
    text = next((record[k] for k in JSON_KEYS if isinstance(record.get(k), str)), None)
    if text is None or not text.strip():
        raise ValueError(
            f"{path}:{lineno}: a JSONL prompt needs a non-empty string field, one of {JSON_KEYS}"
        )
    return text.strip()


def make_jobs(prompts: list[str], seeds: list[int]) -> list[Job]:
    """Every prompt with every seed, prompt-major (the usual benchmark protocol: seeds 42..51 per prompt)."""
    return [Job(i, p, s) for i, p in enumerate(prompts) for s in seeds]


def overlong_prompts(tokenizer, prompts: list[str]) -> list[str]:
    """Prompts longer than the tokenizer limit (incl. BOS/EOS); the text encoder sees them truncated."""
    ids = tokenizer(list(prompts), padding=False, truncation=False).input_ids
    return [p for p, i in zip(prompts, ids, strict=True) if len(i) > tokenizer.model_max_length]
