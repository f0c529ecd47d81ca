"""The layering rules, checked on the source with ``ast`` (nothing is imported).

* backbone / adapter / losses / sampling / training import no world, no evaluation, demo, CLI or method code;
  worlds reach them only through :mod:`dptune.plugins`;
* those layers never compare a string with a world's name ('shapesworld', 'coco');
* no import cycle among dptune modules (module-level, function-level and TYPE_CHECKING imports all count);
* no Python file under src/ is longer than 300 lines.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

from helpers import REPO

SRC = REPO / "src"
LOWER_LAYERS = ("backbone", "adapter", "losses", "sampling", "training")
BANNED = ("dptune.shapesworld", "dptune.evaluation", "dptune.demo", "dptune.cli", "dptune.methods",
          "dptune.data.plugin")
WORLD_NAMES = {"shapesworld", "coco"}
MAX_LINES = 300


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted((SRC / "dptune").rglob("*.py"))}


@cache
def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The module an ``ImportFrom`` reads from, with relative imports resolved against ``module``."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports_in(tree: ast.Module, module: str, is_package: bool) -> list[tuple[str, int]]:
    """Every module ``tree`` imports anywhere in its body, as (dotted name, line). ``from P import x`` names
    ``P.x`` when that is a module, else ``P``; ``importlib.import_module("...")`` with a literal counts too."""
    modules = all_modules()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, module, is_package)
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.append((sub if sub in modules else base, node.lineno))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append((node.args[0].value, node.lineno))
    return found


def imports_of(path: Path) -> list[tuple[str, int]]:
    return imports_in(parsed(path), module_name(path), path.name == "__init__.py")


def lower_layer_files() -> list[Path]:
    return [p for layer in LOWER_LAYERS for p in sorted((SRC / "dptune" / layer).rglob("*.py"))]


def _rel(path: Path) -> str:
    return path.relative_to(SRC).as_posix()


def test_lower_layers_import_no_world_evaluation_or_method_code():
    bad = [f"{_rel(p)}:{line} imports {name}" for p in lower_layer_files() for name, line in imports_of(p)
           if any(name == b or name.startswith(b + ".") for b in BANNED)]
    assert not bad, "lower layers must reach worlds through dptune.plugins:\n" + "\n".join(bad)


def _strings(node: ast.AST) -> list[str]:
    """String constants of a comparison operand, including the elements of a literal tuple / list / set."""
    items = node.elts if isinstance(node, ast.Tuple | ast.List | ast.Set) else [node]
    return [n.value for n in items if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def world_name_comparisons(tree: ast.Module) -> list[int]:
    """Lines where a world's name is compared with (==, !=, in, is, match) or used as a str.startswith prefix."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            operands, line = [node.left, *node.comparators], node.lineno
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in ("startswith", "endswith")):
            operands, line = list(node.args), node.lineno
        elif isinstance(node, ast.match_case):
            operands = [p.value for p in ast.walk(node.pattern) if isinstance(p, ast.MatchValue)]
            line = node.pattern.lineno
        else:
            continue
        if WORLD_NAMES & {s for op in operands for s in _strings(op)}:
            lines.append(line)
    return lines


def test_lower_layers_never_branch_on_a_world_name():
    bad = [f"{_rel(p)}:{line}" for p in lower_layer_files() for line in world_name_comparisons(parsed(p))]
    assert not bad, "compare no world name in the lower layers; ask dptune.plugins instead:\n" + "\n".join(bad)


def test_the_detectors_find_a_planted_import_and_branch():
    code = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from ..evaluation import suite\n"
        "def f(cfg):\n    from dptune.shapesworld import judge_image\n"
        "    if cfg.data in ('shapesworld', 'x') or cfg.model.startswith('coco'):\n        return judge_image\n"
        "    match cfg.data:\n        case 'coco':\n            return None\n"
        "    return cfg.data == 'shapes'\n"
    )
    names = [n for n, _ in imports_in(ast.parse(code), "dptune.training.probe_module", False)]
    assert names == ["typing", "dptune.evaluation.suite", "dptune.shapesworld"]
    assert sorted(world_name_comparisons(ast.parse(code))) == [6, 6, 9]


def import_graph() -> dict[str, set[str]]:
    """dptune module -> the dptune modules it imports (the nearest existing module of each dotted name)."""
    modules = all_modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for target, _ in imports_of(path):
            while target and target not in modules:  # 'dptune.x.func' -> 'dptune.x'
                target = target.rpartition(".")[0]
            if target.startswith("dptune") and target != name:
                targets.add(target)
        graph[name] = targets
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module (= import cycles)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert strongly_connected(graph) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_among_dptune_modules():
    cycles = strongly_connected(import_graph())
    assert not cycles, "import cycles (break them by moving the shared code down a layer):\n" + "\n".join(
        " <-> ".join(c) for c in cycles)


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: _rel(p))
def test_source_files_stay_under_300_lines(path):
    n = len(path.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"{_rel(path)} has {n} lines > {MAX_LINES}; split it by responsibility"
