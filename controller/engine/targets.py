"""What a pass takes AWS to: a ``Target`` per resource.

A target comes from a manifest (its spec may hold ``ref:``s; its tags are
the Environment's, the spec's and lensops's ownership tags), or is pinned to
a recorded state: a rollback's state at the healthy point, an adopted
resource's state at adoption, one step of a progressive delivery. Pinned
targets carry the tags they were recorded with, and may carry the very
state to write, so the engine applies them exactly as recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from controller.manifests.model import Identity, Resource
from controller.state import ResourceRecord
from controller.kinds import Desired


@dataclass
class Target(Identity):
    """One resource as a pass wants it."""

    kind: str
    name: str
    physical: str
    spec: dict[str, Any]
    annotations: dict[str, str] = field(default_factory=dict)
    depends_on: list[str] = field(default_factory=list)
    tags: dict[str, str] | None = None
    """Recorded tags, used as they are; None: computed from the environment and the spec."""
    state: dict[str, Any] | None = None
    """A pinned normalised state, written as it is; None: the reconciler's ``desired_state``."""
    forget: bool = False
    """Once written, lensops no longer manages it (a resource adopted since the healthy point,
    put back as it was found)."""

    @classmethod
    def of(cls, resource: Resource) -> "Target":
        """The target of a manifest."""
        return cls(resource.kind, resource.name, resource.physical, resource.spec, resource.annotations, resource.depends_on)

    @classmethod
    def recorded(cls, kind: str, name: str, data: dict[str, Any], state: dict[str, Any] | None = None, forget: bool = False) -> "Target":
        """A target pinned to a ``desired_record`` (and, when given, to the state to write)."""
        return cls(
            kind,
            name,
            data["physical"],
            data["spec"],
            dict(data.get("annotations") or {}),
            list(data.get("dependsOn") or []),
            tags=dict(data.get("tags") or {}),
            state=state,
            forget=forget,
        )


def desired_record(desired: Desired, depends_on: list[str] | None = None) -> dict[str, Any]:
    """What the state store keeps of a Desired: enough to write it again exactly (a rollback,
    a rollout step), and its dependencies, so that deletes go dependents first."""
    return {
        "spec": desired.spec if desired.stored is None else desired.stored,
        "tags": desired.tags,
        "annotations": desired.annotations,
        "physical": desired.physical,
        "dependsOn": sorted(depends_on or []),
    }


def healthy_point(
    environment: str, changes: dict[str, dict[str, Any]], inventory: dict[str, ResourceRecord], only: set[str] | None = None
) -> tuple[list[Target], list[ResourceRecord], frozenset[tuple[str, str]]]:
    """What takes an environment back to its healthy point, from the journal's changes since then.

    Each resource changed since goes back to what it was: its recorded desired
    state, or the state lensops adopted it in (and is then no longer managed).
    What lensops created since is deleted; nothing it did not create ever is.
    Returns the targets, the records of the resources to delete, and which of
    those (Kind/name, physical) lensops began to create without recording it
    (an interrupted create: only their ownership tags can show they are lensops's).
    """
    targets: list[Target] = []
    deletes: list[ResourceRecord] = []
    unproven: set[tuple[str, str]] = set()
    for ident, entry in sorted(changes.items()):
        if only is not None and ident not in only:
            continue
        kind, name = ident.split("/", 1)
        target: Target | None = None
        if entry["was"] == "recorded":
            target = Target.recorded(kind, name, entry["desired"])
        elif entry["was"] == "adopted":
            target = Target.recorded(kind, name, entry["desired"], state=entry["state"], forget=True)
        if target is not None:
            targets.append(target)
        record = inventory.get(ident)
        for physical in entry.get("created", []):
            if target is not None and physical == target.physical:
                continue
            if record is not None and record.physical == physical:
                deletes.append(record)
            else:
                deletes.append(ResourceRecord(environment, kind, name, physical))
                unproven.add((ident, physical))
    return targets, deletes, frozenset(unproven)
