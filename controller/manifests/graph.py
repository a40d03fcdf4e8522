"""References (``ref:Kind/name[.attr]``) and the dependency graph of an environment."""

from __future__ import annotations

import re
from typing import Any, NamedTuple

REF_PREFIX = "ref:"
REF_RE = re.compile(r"^ref:(?P<kind>[A-Za-z]+)/(?P<name>[a-z0-9]([-a-z0-9]*[a-z0-9])?)(?:\.(?P<attr>[A-Za-z0-9_.\-]+))?$")


class Ref(NamedTuple):
    """One ``ref:Kind/name[.attr]``."""

    ident: str
    """``Kind/name`` of the resource referred to."""
    attr: str | None


def is_ref(value: Any) -> bool:
    """The value is written as a reference (valid or not)."""
    return isinstance(value, str) and value.startswith(REF_PREFIX)


def parse_ref(value: str) -> Ref | None:
    """The reference ``value`` writes, or None when it is not a valid one."""
    match = REF_RE.match(value)
    return Ref(f"{match['kind']}/{match['name']}", match["attr"]) if match else None


def find_refs(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], str, str | None]]:
    """Every reference in a value: (path, ``Kind/name``, attribute or None), in document order."""
    found: list[tuple[tuple[Any, ...], str, str | None]] = []
    _collect_refs(value, path, found)
    return found


def _collect_refs(value: Any, path: tuple[Any, ...], found: list[tuple[tuple[Any, ...], str, str | None]]) -> None:
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        if is_ref(value):
            ref = parse_ref(value)
            found.append((path, ref.ident, ref.attr) if ref else (path, value[len(REF_PREFIX) :], "\0invalid"))
        return
    for key, item in items:
        if isinstance(item, str):
            if is_ref(item):
                _collect_refs(item, path + (key,), found)
        elif isinstance(item, (dict, list)):
            _collect_refs(item, path + (key,), found)


def topological_order(nodes: list[str], edges: dict[str, set[str]]) -> tuple[list[str], list[str] | None]:
    """Kahn's algorithm: (order, None), or (partial order, one cycle as a list of nodes).

    ``edges[a]`` are the nodes ``a`` depends on. Ties keep the input order, so
    the order is stable from one run to the next.
    """
    position = {n: i for i, n in enumerate(nodes)}
    waiting = {n: len(edges.get(n, set())) for n in nodes}
    dependents: dict[str, list[str]] = {n: [] for n in nodes}
    for node in nodes:
        for dep in edges.get(node, set()):
            dependents[dep].append(node)
    ready = sorted((n for n in nodes if waiting[n] == 0), key=position.__getitem__)
    order: list[str] = []
    while ready:
        node = ready.pop(0)
        order.append(node)
        released = []
        for dependent in dependents[node]:
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                released.append(dependent)
        if released:
            ready = sorted(ready + released, key=position.__getitem__)
    if len(order) == len(nodes):
        return order, None
    return order, _a_cycle([n for n in nodes if waiting[n] > 0], edges)


def _a_cycle(remaining: list[str], edges: dict[str, set[str]]) -> list[str]:
    left = set(remaining)
    node = remaining[0]
    seen: list[str] = []
    while node not in seen:
        seen.append(node)
        node = sorted(d for d in edges.get(node, set()) if d in left)[0]
    return seen[seen.index(node) :] + [node]
