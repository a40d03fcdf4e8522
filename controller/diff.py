"""The one generic differ: desired and live states, both normalised -> changes.

A pure function. Top-level fields that the desired state does not name are
not compared (AWS reports many server-side fields); below the top level both
sides are compared key by key, so that a removed tag or dimension shows up.
Lists are compared whole (reconcilers sort those whose order AWS ignores).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from controller.sensitive import masked


@dataclass(frozen=True)
class Change:
    """One field that differs: ``path`` is dotted (``tags.team``), old is live, new is desired."""

    path: str
    old: Any
    new: Any

    def __post_init__(self) -> None:
        # A sealed value (a NoEcho parameter) reads "(sensitive value)" wherever a change is shown.
        object.__setattr__(self, "old", masked(self.old))
        object.__setattr__(self, "new", masked(self.new))

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "old": self.old, "new": self.new}


_ABSENT = None


def diff(desired: dict[str, Any], live: dict[str, Any], ignore: frozenset[str] | set[str] = frozenset()) -> list[Change]:
    """Every field of ``desired`` whose value differs in ``live``, skipping ``ignore`` paths."""
    changes: list[Change] = []
    for key in desired:
        if key in ignore:
            continue
        _compare(key, desired[key], live.get(key, _ABSENT), ignore, changes)
    return changes


def _compare(path: str, new: Any, old: Any, ignore: frozenset[str] | set[str], out: list[Change]) -> None:
    if isinstance(new, dict) and isinstance(old, dict):
        if _equal(new, old):
            return  # the common case, settled without building a path per key
        for key in sorted(set(new) | set(old), key=str):
            sub = f"{path}.{key}"
            if sub in ignore:
                continue
            _compare(sub, new.get(key, _ABSENT), old.get(key, _ABSENT), ignore, out)
        return
    if not _equal(new, old):
        out.append(Change(path, old, new))


_SCALARS = frozenset({str, int, float, type(None)})


def _equal(a: Any, b: Any) -> bool:
    kind = type(a)
    if kind is type(b) and kind in _SCALARS:
        return bool(a == b)  # the common case: two values of one plain type
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or (isinstance(a, bool) and isinstance(b, bool) and a == b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b  # exact: 1 == 1.0, and large integers are not rounded through float
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)
