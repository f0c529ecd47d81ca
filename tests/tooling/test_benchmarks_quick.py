"""Every benchmarks/*.py runs with --quick and ends with one JSON line on stdout (so `make bench` cannot rot).

Each script runs in its own process, as `make bench` runs it; a new benchmark is picked up by the glob.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO  # noqa: E402

BENCHMARKS = sorted((REPO / "benchmarks").glob("*.py"))


def test_benchmarks_are_found():
    assert BENCHMARKS, f"no benchmarks/*.py under {REPO}"


@pytest.mark.parametrize("script", BENCHMARKS, ids=[p.stem for p in BENCHMARKS])
def test_quick_run_ends_with_one_json_line(script: Path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    # the timeout only stops a hung run from blocking the suite; it is far above a quick run's time
    proc = subprocess.run([sys.executable, str(script.relative_to(REPO)), "--quick"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{script.name} --quick failed:\n{proc.stderr[-3000:]}"
    lines = proc.stdout.strip().splitlines()
    assert lines, f"{script.name} printed nothing on stdout"
    record = json.loads(lines[-1])
    assert isinstance(record, dict)
    assert record.get("quick") is True, f"{script.name} must report \"quick\": true in its JSON line"
    assert sum(line.lstrip().startswith("{") for line in lines) == 1, f"{script.name}: more than one JSON line"
