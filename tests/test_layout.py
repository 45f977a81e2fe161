"""The package layout: one home per feature, and no import circle anywhere.

Every import counts, the ones inside functions too: a lazy import hides a circle
from the interpreter at start-up, not from a reader who follows it.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import REPO

PACKAGE = REPO / "edge_daemon"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's own modules ``name`` imports, each with the packages above it."""
    is_pkg = path.name == "__init__.py"
    here = name.split(".") if is_pkg else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        for t in targets:
            parts = t.split(".")
            for i in range(1, len(parts) + 1):
                candidate = ".".join(parts[:i])
                if candidate in known and candidate != name:
                    found.add(candidate)
    # A module's own package is imported first: edge_daemon.x.y needs edge_daemon.x.
    return {m for m in found if not name.startswith(m + ".")}


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circle_in_the_package() -> None:
    assert cycles(import_graph()) == []


def test_the_cycle_finder_sees_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_each_feature_is_one_package() -> None:
    mods = set(modules())
    for feature in ("engine", "mqtt", "events", "web", "sources", "sinks"):
        assert f"edge_daemon.{feature}" in mods, feature
    # The engine and MQTT no longer sit at the top level.
    top = {m.split(".")[1] for m in mods if m.count(".") == 1}
    for old in ("runtimes", "xnnpack", "autoselect", "metadata", "model", "broker", "fleet"):
        assert old not in top, old


def test_only_the_command_line_knows_the_lifecycle() -> None:
    graph = import_graph()
    importers = {t: sorted(n for n, deps in graph.items() if t in deps) for t in graph}
    assert importers["edge_daemon.cli"] == ["edge_daemon.__main__"]
    assert importers["edge_daemon.daemon"] == ["edge_daemon.cli"]
    assert importers["edge_daemon.notify"] == ["edge_daemon.daemon"]
