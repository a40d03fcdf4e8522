"""Text rendering of plans and outcomes for people (JSON goes out as data)."""

from __future__ import annotations

import json
from typing import Any

from controller.plan import Plan, ResourcePlan

_SYMBOL = {"create": "+", "update": "~", "delete": "-", "noop": " "}
_LONG = 120


def _value(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str) if not isinstance(value, str) else json.dumps(value)
    return text if len(text) <= _LONG else text[: _LONG - 3] + "..."


def resource_lines(rp: ResourcePlan) -> list[str]:
    """The lines of one resource in a plan."""
    if rp.status in ("failed", "conflict", "blocked"):
        return [f"  ! {rp.ident} ({rp.physical}): {rp.status}: {rp.message}"]
    if rp.action == "noop" and not rp.drift:
        return []
    held = f"  [{rp.status}: {rp.message}]" if rp.status != "ok" else ""
    adopt = " (adopt)" if rp.adopt else ""
    lines = [f"  {_SYMBOL.get(rp.action, '?')} {rp.ident} ({rp.physical}){adopt}{held}"]
    if rp.drift:
        lines.append("      drifted from the last apply: " + ", ".join(c.path for c in rp.drift))
    if rp.action == "update":
        for change in rp.changes:
            lines.append(f"      {change.path}: {_value(change.old)} -> {_value(change.new)}")
    elif rp.action == "create":
        for change in rp.changes:
            lines.append(f"      {change.path}: {_value(change.new)}")
    return lines


def plan_text(plan: Plan) -> str:
    """A plan as terraform users expect to read it."""
    lines = [f"Environment {plan.environment} (revision {plan.revision or 'unknown'})"]
    for rp in plan.resources:
        lines.extend(resource_lines(rp))
    for error in plan.errors:
        lines.append(f"  ! {error}")
    c = plan.counts()
    lines.append(
        f"Plan: {c['create']} to create, {c['update']} to update, {c['delete']} to delete, "
        f"{c['noop']} unchanged, {c['held']} held, {c['failed']} failed."
    )
    return "\n".join(lines)
