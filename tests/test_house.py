"""The house: no import cycle among the product's modules, and the floors keep their order.

Read from the source with ``ast`` (function-local imports included: a cycle
hidden in a function is still a cycle). The product is ``controller/``,
``reconcilers/`` and ``runbooks/``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("controller", "reconcilers", "runbooks")

CORE_FOR_KINDS = {
    "controller.kinds",
    "controller.errors",
    "controller.diff",
    "controller.sensitive",
    "controller.apishape",
    "controller.logs",
    "controller.alarms",
    "controller.plan",
    "controller.manifests.types",
    "controller.manifests.graph",
    "controller.manifests.yamlsafe",
}
"""What a reconciler may import from ``controller/``: the protocol and the small core, never the
engine, the loader, the state store or the daemon."""


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """The product modules ``name`` imports (``from pkg import module`` counts as the module)."""
    out: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        out.update(t for t in targets if t in modules and t != name)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, name, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_among_the_product_modules():
    assert _cycles(_graph()) == []


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_reconcilers_import_only_the_protocol_and_the_core():
    graph = _graph()
    wrong = {
        name: sorted(t for t in targets if t.startswith("controller") and t not in CORE_FOR_KINDS)
        for name, targets in graph.items()
        if name.startswith("reconcilers")
    }
    assert {name: targets for name, targets in wrong.items() if targets} == {}


def test_only_the_catalog_names_the_plugin_packages():
    """The loader, the engine and the docs are handed a registry; ``controller/catalog.py`` builds it."""
    graph = _graph()
    naming = sorted(name for name, targets in graph.items() if name.startswith("controller") and any(t.startswith("reconcilers") for t in targets))
    assert naming == ["controller.catalog"]
