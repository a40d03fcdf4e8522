"""The plan: what one reconcile of one environment would do, resource by resource."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from controller.diff import Change

KNOWN_AFTER_APPLY = "(known after apply)"
FAILING = frozenset({"failed", "conflict", "blocked"})
"""The statuses of a resource that cannot go ahead."""


@dataclass
class ResourcePlan:
    """The decision for one resource.

    ``action`` is create, update, delete or noop; ``status`` says whether it
    can go ahead (ok), is held (suspended, orphan, retained) or cannot
    (conflict, failed, blocked).
    """

    kind: str
    name: str
    physical: str
    action: str = "noop"
    changes: list[Change] = field(default_factory=list)
    status: str = "ok"
    message: str = ""
    drift: list[Change] = field(default_factory=list)
    adopt: bool = False

    @property
    def ident(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def failing(self) -> bool:
        """The resource cannot go ahead (failed, in conflict, or blocked)."""
        return self.status in FAILING

    @property
    def pending(self) -> bool:
        """A change that apply would make."""
        return self.action != "noop" and self.status == "ok"

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "physical": self.physical,
            "action": self.action,
            "status": self.status,
            "message": self.message,
            "adopt": self.adopt,
            "changes": [c.as_dict() for c in self.changes],
            "drift": [c.as_dict() for c in self.drift],
        }


@dataclass
class Plan:
    """Every resource decision of one environment, and what stops the whole of it."""

    environment: str
    revision: str
    resources: list[ResourcePlan] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out = {"create": 0, "update": 0, "delete": 0, "noop": 0, "failed": 0, "held": 0}
        for r in self.resources:
            if r.failing:
                out["failed"] += 1
            elif r.pending:
                out[r.action] += 1
            elif r.action != "noop":
                out["held"] += 1
            else:
                out["noop"] += 1
        return out

    @property
    def has_changes(self) -> bool:
        return any(r.pending for r in self.resources)

    @property
    def failed(self) -> bool:
        return bool(self.errors) or any(r.failing for r in self.resources)

    def failures(self) -> list[str]:
        """``Kind/name: message`` of every resource that cannot go ahead."""
        return [f"{r.ident}: {r.message}" for r in self.resources if r.failing]

    def as_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "revision": self.revision,
            "summary": self.counts(),
            "errors": list(self.errors),
            "resources": [r.as_dict() for r in self.resources],
        }
