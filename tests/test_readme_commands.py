"""The README's real-checkpoint commands parse with today's CLI (they cannot run here: no weights, no data)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands(section: str = "## On a real Stable Diffusion checkpoint") -> list[list[str]]:
    """The ``dptune ...`` command lines of the first bash block after ``section`` (continuations joined)."""
    text = README.read_text().split(section, 1)[1]
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    joined = block.replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in joined.splitlines() if line.startswith("dptune ")]


def test_readme_lists_the_whole_pipeline():
    commands = [c[1] for c in readme_commands()]
    assert {"data", "probe", "tune", "generate", "eval"} <= set(commands)


@pytest.mark.parametrize("argv", readme_commands(), ids=lambda a: " ".join(a[1:3]))
def test_readme_command_parses(argv):
    from dptune.cli.main import build_parser

    parser = build_parser()
    args, extra = parser.parse_known_args(argv[1:])
    assert not extra, f"README passes options the CLI does not know: {extra}"
    assert getattr(args, "_run", None) is not None
    if argv[1] in ("probe", "tune"):  # the config files the README names exist
        assert (README.parent / args.config).is_file()
