"""Values lensops must use but never show or keep: a Stack's ``NoEcho`` parameters.

In a normalised state such a value is replaced by its *seal*, a salted digest:
two seals differ when the values do, so a change is still seen and applied,
and the state store keeps only the seal. Every plan change shows a seal as
``(sensitive value)``, as Terraform shows its sensitive values. The value
itself lives only in the memory of the pass that applies it.
"""

from __future__ import annotations

import hashlib
from typing import Any

MASK = "(sensitive value)"
_PREFIX = "(sensitive sha256:"


def seal(value: str, salt: str) -> str:
    """The seal of ``value``; ``salt`` (the resource and the field) keeps one secret's seals apart."""
    digest = hashlib.sha256(salt.encode() + b"\0" + value.encode()).hexdigest()
    return f"{_PREFIX}{digest})"


def is_sealed(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(_PREFIX)


def masked(value: Any) -> Any:
    """``value`` with every seal in it shown as ``(sensitive value)`` (the value itself when it holds none)."""
    if isinstance(value, str):
        return MASK if value.startswith(_PREFIX) else value
    if isinstance(value, dict):
        return {k: masked(v) for k, v in value.items()} if _holds_seal(value) else value
    if isinstance(value, list):
        return [masked(v) for v in value] if _holds_seal(value) else value
    return value


def _holds_seal(value: Any) -> bool:
    if isinstance(value, str):
        return value.startswith(_PREFIX)
    if isinstance(value, dict):
        return any(_holds_seal(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_seal(v) for v in value)
    return False
