"""The plan: what one reconcile of one environment would do, resource by resource."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from controller.diff import Change

KNOWN_AFTER_APPLY = "(known after apply)"


def short_revision(revision: str) -> str:
    """A revision as people read it: the commit's first 12 characters, and ``-dirty`` when the
    working copy had unsaved changes (the demo applies every save)."""
    return revision[:12] + ("-dirty" if revision.endswith("-dirty") and len(revision) > 18 else "")


class Outline(list[str]):
    """A field's value that lists what AWS will do, one line per entry, each line led by a plan
    symbol: ``+`` adds, ``~`` changes, ``-`` removes, ``!`` needs a reviewer's eye (a Stack's
    change set, the resources a new stack's template creates).

    A reconciler puts one in the state it shows a plan; the text plan prints it one line per entry
    under the field, coloured by symbol, and JSON carries it as the list of strings it is.
    """


class Action(StrEnum):
    """What a pass does to one resource."""

    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    NOOP = "noop"


class Status(StrEnum):
    """Whether a resource's action can go ahead (ok), is held, or cannot (a failure)."""

    OK = "ok"
    PROGRESSING = "progressing"
    """A progressive rollout is under way."""
    SUSPENDED = "suspended"
    ORPHAN = "orphan"
    RETAINED = "retained"
    CONFLICT = "conflict"
    FAILED = "failed"
    BLOCKED = "blocked"

    @property
    def is_failure(self) -> bool:
        """The resource cannot go ahead (failed, in conflict, or blocked)."""
        return self in (Status.CONFLICT, Status.FAILED, Status.BLOCKED)


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
    action: Action = Action.NOOP
    changes: list[Change] = field(default_factory=list)
    status: Status = Status.OK
    message: str = ""
    drift: list[Change] = field(default_factory=list)
    adopt: bool = False
    retry_after: float | None = None
    """Seconds after which a retryable failure (throttling, a busy resource) is worth another pass."""

    def __post_init__(self) -> None:
        self.action, self.status = Action(self.action), Status(self.status)

    @property
    def ident(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def failing(self) -> bool:
        """The resource cannot go ahead (failed, in conflict, or blocked)."""
        return self.status.is_failure

    @property
    def pending(self) -> bool:
        """A change that apply would make."""
        return self.action != Action.NOOP and self.status == Status.OK

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "physical": self.physical,
            "action": self.action.value,
            "status": self.status.value,
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
        out = {**{action.value: 0 for action in Action}, "failed": 0, "held": 0}
        for r in self.resources:
            if r.failing:
                out["failed"] += 1
            elif r.pending:
                out[r.action] += 1
            elif r.action != Action.NOOP:
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

    @property
    def retry_after(self) -> float | None:
        """The soonest a retryable failure of this plan is worth another pass; None when there is none."""
        delays = [r.retry_after for r in self.resources if r.failing and r.retry_after is not None]
        return min(delays) if delays else None

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
