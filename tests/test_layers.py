"""The package's import graph: no cycles between modules, no import from a layer above.

Layers, lowest first (docs/architecture.md, "Layers"): ``neurolm_data`` (sources, channels, preprocessing, store,
splits, windows, shards) | ``neurolm_train`` (loading, model families, stages, evaluation) | ``benchmarks`` and
``cli``. Every import statement counts, including those inside functions (a deferred import hides a cycle, it does
not remove it). The graph is read from the source with :mod:`ast`, so nothing is imported to check it.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("neurolm_data", "neurolm_train", "benchmarks")
LAYER = {"neurolm_data": 0, "neurolm_train": 1, "benchmarks": 2, "cli": 2}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    mods = {"cli": REPO / "cli.py"}
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            mods[_module_name(path)] = path
    return mods


def _resolve(name: str, mods: dict[str, Path]) -> str | None:
    """The project module an imported dotted name refers to (longest known prefix), else None."""
    while name:
        if name in mods:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (package ``__init__`` imports of a submodule excluded)."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        base = mod if is_pkg else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    anchor = base.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    prefix = ".".join(anchor + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ""
                targets = [f"{prefix}.{a.name}" for a in node.names] + [prefix]
            for t in targets:
                dep = _resolve(t, mods)
                if dep is None or dep == mod:
                    continue
                # a package's __init__ re-exporting its own submodules is not a dependency edge upward
                if is_pkg and dep.startswith(mod + "."):
                    continue
                graph[mod].add(dep)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _layer(mod: str) -> int:
    """A package's ``__main__`` (``python -m neurolm_train``, what torchrun launches) is an entry point, like cli."""
    return LAYER["cli"] if mod.endswith(".__main__") else LAYER[mod.split(".")[0]]


def test_graph_sees_the_packages():
    graph = import_graph()
    assert "neurolm_data.split" in graph and "neurolm_train.train" in graph
    assert "neurolm_data.store" in graph["neurolm_data.split"]


def test_no_import_cycles():
    cycles = _cycles(import_graph())
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_no_upward_imports():
    bad = sorted(
        f"{m} imports {d}" for m, deps in import_graph().items() for d in deps if _layer(d) > _layer(m)
    )
    assert not bad, "imports from a layer above: " + "; ".join(bad)
