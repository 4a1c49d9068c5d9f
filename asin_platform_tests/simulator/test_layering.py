"""The simulator package has no import cycle, and core/ does not know the simulator."""

from __future__ import annotations

import ast
from pathlib import Path

import asin_platform

PACKAGE = Path(asin_platform.__file__).parent


def _imports(path: Path, anywhere: bool) -> set[str]:
    """``asin_platform.*`` modules imported by ``path``: at module level, or ``anywhere`` in it."""
    tree = ast.parse(path.read_text())
    nodes = ast.walk(tree) if anywhere else iter(tree.body)
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("asin_platform"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("asin_platform"))
    return found


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_import_cycle_in_the_simulator() -> None:
    files = {_module(p): p for p in (PACKAGE / "simulator").glob("*.py") if p.name != "__init__.py"}
    graph = {name: {m for m in _imports(path, anywhere=True) if m in files} for name, path in files.items()}

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph[start]:
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    cyclic = sorted(name for name in graph if reaches(name, name, {name}))
    assert cyclic == []
    # server and keepa share faults/stats through their own module, not through each other
    assert "asin_platform.simulator.server" not in graph["asin_platform.simulator.keepa"]


def test_core_never_imports_the_simulator() -> None:
    offenders = sorted(
        f"{_module(p)} -> {m}"
        for p in (PACKAGE / "core").rglob("*.py")
        for m in _imports(p, anywhere=True)
        if m.startswith("asin_platform.simulator")
    )
    assert offenders == []
