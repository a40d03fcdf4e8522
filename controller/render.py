"""Text rendering of plans for people (JSON goes out as data).

Per resource ``+`` create, ``~`` update, ``-`` delete, with per-field
``old -> new`` values; long values (dashboard bodies, templates, policies)
as a compact unified diff; a value that outlines what AWS will do
(``controller.plan.Outline``: a Stack's change set) one entry per line under
its field, each coloured by its own symbol (``!`` in red); a summary line of
counts. Colour only on a terminal, and never when ``NO_COLOR`` is set.
"""

from __future__ import annotations

import difflib
import json
import os
import sys
from typing import Any

from controller.diff import Change
from controller.plan import Outline, Plan, ResourcePlan, short_revision

_SYMBOL = {"create": "+", "update": "~", "delete": "-", "noop": " "}
_MARK = {"+": "create", "~": "update", "-": "delete", "!": "failed"}
"""An outline entry's leading symbol -> its colour."""
_COLOUR = {"create": "32", "update": "33", "delete": "31", "failed": "31;1", "held": "36"}
_SHORT = 80


def use_colour(stream: Any = None) -> bool:
    """Colour when writing to a terminal and NO_COLOR is not set."""
    stream = stream or sys.stdout
    return hasattr(stream, "isatty") and stream.isatty() and "NO_COLOR" not in os.environ


def _paint(text: str, key: str, colour: bool) -> str:
    return f"\033[{_COLOUR[key]}m{text}\033[0m" if colour and key in _COLOUR else text


def _one_line(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    return json.dumps(value, sort_keys=True, default=str)


def _lines(value: Any) -> list[str]:
    if isinstance(value, str):
        return value.splitlines() or [""]
    return json.dumps(value, indent=2, sort_keys=True, default=str).splitlines()


def change_lines(change: Change, create: bool = False, colour: bool = False) -> list[str]:
    """How one field change reads: ``path: old -> new``, a compact diff for long values, or an
    outline's entries one per line."""
    outline = next((v for v in (change.new, change.old) if isinstance(v, Outline) and v), None)
    if outline is not None:
        return [f"{change.path}:"] + [f"  {_paint(line, _MARK.get(line[:1], ''), colour)}" for line in outline]
    new, old = _one_line(change.new), _one_line(change.old)
    if create:
        if len(new) <= _SHORT:
            return [f"{change.path}: {new}"]
        return [f"{change.path}:"] + [f"  {line}" for line in _lines(change.new)[:40]]
    if len(new) <= _SHORT and len(old) <= _SHORT:
        return [f"{change.path}: {old} -> {new}"]
    if change.old is None:
        return [f"{change.path}: (added)"] + [f"  + {line}" for line in _lines(change.new)[:40]]
    if change.new is None:
        return [f"{change.path}: (removed)"] + [f"  - {line}" for line in _lines(change.old)[:40]]
    diff = difflib.unified_diff(_lines(change.old) if change.old is not None else [], _lines(change.new), lineterm="", n=1)
    body = [line for line in diff if not line.startswith(("---", "+++"))]
    return [f"{change.path}:"] + [f"  {line}" for line in body]


def resource_lines(rp: ResourcePlan, colour: bool = False) -> list[str]:
    """The lines of one resource in a plan (none for a resource in sync)."""
    if rp.failing:
        return [_paint(f"  ! {rp.ident} ({rp.physical}): {rp.status}: {rp.message}", "failed", colour)]
    if rp.action == "noop" and not rp.drift:
        return []
    held = f"  [{rp.status}: {rp.message}]" if rp.status != "ok" else ""
    if rp.status == "ok" and rp.action == "update" and rp.message:
        held = f"  [{rp.message}]"  # an update that goes ahead with a caveat: "ownership not verified"
    adopt = " (adopt)" if rp.adopt else ""
    key = rp.action if rp.status == "ok" else "held"
    lines = [_paint(f"  {_SYMBOL.get(rp.action, '?')} {rp.ident} ({rp.physical}){adopt}{held}", key, colour)]
    if rp.drift:
        lines.append("      drifted from the last apply: " + ", ".join(c.path for c in rp.drift))
    for change in rp.changes:
        lines.extend(f"      {line}" for line in change_lines(change, create=rp.action == "create", colour=colour))
    return lines


def summary_line(plan: Plan) -> str:
    c = plan.counts()
    return (
        f"Plan: {c['create']} to create, {c['update']} to update, {c['delete']} to delete, "
        f"{c['noop']} unchanged, {c['held']} held, {c['failed']} failed."
    )


def plan_text(plan: Plan, colour: bool = False) -> str:
    """A plan as terraform users expect to read it."""
    lines = [f"Environment {plan.environment} (revision {short_revision(plan.revision) or 'unknown'})"]
    for rp in plan.resources:
        lines.extend(resource_lines(rp, colour))
    for error in plan.errors:
        lines.append(_paint(f"  ! {error}", "failed", colour))
    lines.append(summary_line(plan))
    return "\n".join(lines)


_DONE = {"create": "created", "update": "updated", "delete": "deleted"}


def resource_done(rp: ResourcePlan) -> str:
    """One progress line for a resource an apply acted on."""
    if rp.failing:
        return f"! {rp.ident} {rp.status}: {rp.message}"
    what = _DONE.get(rp.action, rp.action)
    extra = f" ({rp.message})" if rp.message else ""
    return f"{_SYMBOL.get(rp.action, '?')} {rp.ident} {what}{extra}"
