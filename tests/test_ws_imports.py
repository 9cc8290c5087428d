"""Imports within ``turnout.ws`` go one way, from the hub down: no module imports one that
imports it back (counting imports made inside functions and for type checking only), and
each module imports on its own."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import turnout.ws

PACKAGE = Path(turnout.ws.__file__).parent
MODULES = sorted(f"turnout.ws.{p.stem}" for p in PACKAGE.glob("*.py") if p.stem != "__init__")


def imported(module: str) -> set[str]:
    """The ``turnout.ws`` modules ``module`` imports anywhere in its source."""
    path = PACKAGE / f"{module.rsplit('.', 1)[1]}.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found.update(n for n in names if n in MODULES and n != module)
    return found


def test_the_ws_modules_import_each_other_one_way_only() -> None:
    graph = {module: imported(module) for module in MODULES}

    def cycle_from(start: str, at: str, path: list[str]) -> list[str] | None:
        for following in sorted(graph[at]):
            if following == start:
                return [*path, start]
            if following not in path:
                found = cycle_from(start, following, [*path, following])
                if found:
                    return found
        return None

    cycles = [c for m in MODULES if (c := cycle_from(m, m, [m]))]
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)
    # What the hub serves through takes the hub as an argument, never imports it.
    for below in ("dashboard", "http", "surface", "watchers"):
        assert "turnout.ws.hub" not in graph[f"turnout.ws.{below}"]


@pytest.mark.parametrize("module", MODULES)
def test_each_ws_module_imports_alone(module: str) -> None:
    if module == "turnout.ws.fleet":
        pytest.importorskip("nats")
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
