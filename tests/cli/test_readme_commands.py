"""The real-checkpoint commands of the README and docs/real-sd.md parse with today's CLI (they cannot run
here: no weights, no data)."""

from __future__ import annotations

import shlex

import pytest

from helpers import REPO

ROOT = REPO
# (file, heading): the first bash block after the heading holds the commands
SOURCES = [("README.md", "## On your own Stable Diffusion checkpoint"), ("docs/real-sd.md", "## The recipe")]


def block_commands(path: str, section: str) -> list[list[str]]:
    """The ``dptune ...`` command lines of the first bash block after ``section`` (continuations joined)."""
    text = (ROOT / path).read_text().split(section, 1)[1]
    block = text.split("```bash\n", 1)[1].split("```", 1)[0]
    joined = block.replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in joined.splitlines() if line.startswith("dptune ")]


ALL = [(path, argv) for path, section in SOURCES for argv in block_commands(path, section)]


def test_the_recipe_lists_the_whole_pipeline():
    commands = {argv[1] for path, argv in ALL if path == "docs/real-sd.md"}
    assert {"data", "probe", "tune", "generate", "eval", "methods"} <= commands


@pytest.mark.parametrize(("path", "argv"), ALL, ids=lambda a: a if isinstance(a, str) else " ".join(a[1:3]))
def test_documented_command_parses(path, argv):
    from dptune.cli.main import build_parser

    args, extra = build_parser().parse_known_args(argv[1:])
    assert not extra, f"{path} passes options the CLI does not know: {extra}"
    assert getattr(args, "_run", None) is not None
    if argv[1] in ("probe", "tune"):  # the config files the docs name exist
        assert (ROOT / args.config).is_file()
