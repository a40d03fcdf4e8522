"""Decisions, as pure functions: observed state, desired state and records in, a plan out.

Nothing here calls AWS or the state store. ``decide`` settles one resource
(create, update, noop; conflict, adopt, suspended, progressing; its drift),
``prune_decisions`` and ``mass_prune_guard`` what Git no longer has
(``retain_unproven`` and ``decommission_guard`` for an environment removed
from Git), and ``resolve_refs`` the ``ref:`` strings of a spec against what
is known. Ownership (``ownership``) comes from the state store's records and,
where the kind has them, AWS's ownership tags; a plan whose store knows nothing
of the environment marks what it cannot verify (``unverified``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Callable

from controller.diff import Change, diff
from controller.manifests.graph import is_ref, parse_ref, topological_order
from controller.manifests.model import ANNOTATION_ADOPT, ANNOTATION_PRUNE, ANNOTATION_SUSPEND
from controller.plan import Action, KNOWN_AFTER_APPLY, ResourcePlan, Status
from controller.engine.targets import Target
from controller.state import ResourceRecord
from controller.kinds import Live

MASS_PRUNE_FRACTION = 0.10

Compare = Callable[[dict[str, Any]], dict[str, Any]]
"""The live state as the reconciler compares it with a given state (``Reconciler.compare_view``)."""


def spec_hash(state: dict[str, Any]) -> str:
    """A stable digest of a normalised state (to know when a spec changed)."""
    return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Unresolved(Exception):
    """A reference whose target has no value yet, while applying."""


def resolve_refs(value: Any, outputs: dict[str, dict[str, Any]], strict: bool) -> Any:
    """Replace every ``ref:Kind/name[.attr]`` by the target's ARN or attribute.

    A target not known yet becomes ``(known after apply)`` when planning and
    raises ``Unresolved`` when applying (``strict``).
    """
    if is_ref(value):
        ref = parse_ref(value)
        if ref is None:
            return value
        ident, attr = ref.ident, ref.attr or "arn"
        found = outputs.get(ident, {}).get(attr)
        if found in (None, ""):
            if strict:
                raise Unresolved(f"{value}: {ident} has no {attr} yet")
            return KNOWN_AFTER_APPLY
        return found
    if isinstance(value, dict):
        return {k: resolve_refs(v, outputs, strict) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_refs(v, outputs, strict) for v in value]
    return value


@dataclass
class Decision:
    """What one resource needs: the plan entry, and the state to write (ignored fields kept live)."""

    plan: ResourcePlan
    state: dict[str, Any]
    _digest: str | None = None

    @property
    def digest(self) -> str:
        """``spec_hash(state)``, computed once."""
        if self._digest is None:
            self._digest = spec_hash(self.state)
        return self._digest


def ownership(
    target: Target, live: Live, environment: str, record: ResourceRecord | None, intent: dict[str, Any] | None
) -> tuple[bool, str]:
    """(owned, why not): lensops owns a live resource when this environment's record or its
    ownership tags name it, or a write to it was interrupted before it was recorded."""
    if record is not None and record.physical == target.physical:
        return True, ""
    if intent is not None and intent.get("physical") == target.physical:
        return True, ""
    if live.owner == target.ident and live.owner_env == environment:
        return True, ""
    if live.owner_env and live.owner_env != environment:
        return False, (
            f"{target.physical} is managed by lensops environment {live.owner_env!r} ({live.owner}); "
            "two environments cannot own one resource"
        )
    return False, f"{target.physical} exists in AWS and is not managed by lensops; annotate lensops.io/adopt: \"true\" to take it over"


def unverified(target: Target, environment: str) -> str:
    """The mark of a change planned without proof of ownership (a plan whose state store knows
    nothing of the environment, for a kind whose ownership AWS keeps no tags of)."""
    return (
        f"ownership not verified: the state store has no record of environment {environment!r}, "
        f"and AWS keeps no ownership tags on a {target.kind}"
    )


def decide(
    target: Target,
    state: dict[str, Any],
    live: Live | None,
    compare: Compare,
    *,
    environment: str,
    record: ResourceRecord | None,
    intent: dict[str, Any] | None,
    rollout: dict[str, Any] | None,
    shown: Compare | None = None,
    env_unknown: bool = False,
) -> Decision:
    """The decision for one resource, from its desired ``state`` and what AWS and the records say.
    A creation's changes are what ``shown`` makes of ``state`` (``Reconciler.creation_view``).

    ``env_unknown``: a plan whose state store has no record of the environment (a pull request's
    check). A resource whose ownership only the store could show (no tags read) is then not a
    conflict: unchanged where live equals desired, else an update marked "ownership not verified".
    An apply always has the store: it changes only what it can prove it owns.
    """
    rp = ResourcePlan(target.kind, target.name, target.physical)
    decision = Decision(rp, state)
    ignore = target.ignored_fields
    if live is None:
        rp.action = Action.CREATE
        view = state if shown is None else shown(state)
        rp.changes = [Change(k, None, v) for k, v in view.items() if k not in ignore and v not in (None, "", [], {})]
    else:
        owned, why = ownership(target, live, environment, record, intent)
        foreign = bool(live.owner_env) and live.owner_env != environment
        adopting = target.annotation_true(ANNOTATION_ADOPT)
        unseen = not owned and env_unknown and not live.tags_read and not adopting
        if not owned and not unseen and (foreign or not adopting):
            rp.status, rp.message = Status.CONFLICT, why
            return decision
        rp.adopt = not owned and not unseen
        view = compare(state)
        rp.changes = diff(state, view, ignore)
        rp.action = Action.UPDATE if rp.changes else Action.NOOP
        if unseen and rp.changes:
            rp.message = unverified(target, environment)
        # Fields another tool owns keep their live value even through APIs that
        # replace the whole resource (PutMetricAlarm, UpdateWebACL, ...).
        kept = {key: view[key] for key in ignore if key in state and key in view}
        if kept:
            decision.state = {**state, **kept}
        if intent is not None:
            rp.drift = []  # a change was interrupted before it was recorded: its result is not drift
        elif record is not None and record.physical == target.physical:
            if record.spec_hash == decision.digest:
                rp.drift = list(rp.changes)  # the recorded spec is this one: its drift is the change set
            elif record.spec is not None:
                rp.drift = diff(record.spec, compare(record.spec), ignore)
    if rp.action != Action.NOOP and target.annotation_true(ANNOTATION_SUSPEND):
        rp.status, rp.message = Status.SUSPENDED, "lensops.io/suspend: observed only"
    if rollout is not None and rp.action == Action.UPDATE and spec_hash(rollout["final"]) == decision.digest:
        rp.status = Status.PROGRESSING
        rp.message = f"rollout step {rollout['index'] + 1} of {len(rollout['steps']) + 1}"
    return decision


def prune_order(records: list[ResourceRecord]) -> list[ResourceRecord]:
    """Records in an order safe to delete: a resource before the ones it depends on (every
    name of one resource together: a rollback may delete several names lensops created for it)."""
    by_ident: dict[str, list[ResourceRecord]] = {}
    for record in records:
        by_ident.setdefault(record.ident, []).append(record)
    edges: dict[str, set[str]] = {}
    for ident, named in by_ident.items():
        edges[ident] = {d for r in named for d in (r.desired or {}).get("dependsOn", []) if d in by_ident}
    order, _cycle = topological_order(sorted(by_ident), edges)
    order += [i for i in sorted(by_ident) if i not in order]
    return [record for ident in reversed(order) for record in sorted(by_ident[ident], key=lambda r: r.physical)]


def prune_decisions(
    candidates: list[ResourceRecord],
    observed: dict[str, dict[str, Live]],
    failures: dict[str, str],
    *,
    prune: bool,
    unread: dict[tuple[str, str], str] | None = None,
    notes: dict[tuple[str, str], str] | None = None,
) -> list[tuple[ResourcePlan, ResourceRecord, Live | None]]:
    """A delete decision per record that no target wants, dependents first.

    Only what lensops owns is ever a candidate: it has a record, or (``notes``, what each such
    one is) its ownership tags name this environment. ``failures`` are kinds that could not be
    observed, ``unread`` single resources, by (kind, physical). ``prune`` off leaves candidates
    as orphans; ``lensops.io/prune: "false"`` retains one.
    """
    unread, notes = unread or {}, notes or {}
    decisions: list[tuple[ResourcePlan, ResourceRecord, Live | None]] = []
    for rec in prune_order(candidates):
        rp = ResourcePlan(rec.kind, rec.name, rec.physical, action=Action.DELETE)
        live = observed.get(rec.kind, {}).get(rec.physical)
        note = notes.get((rec.kind, rec.physical), "")
        why_unread = failures.get(rec.kind) or unread.get((rec.kind, rec.physical))
        if why_unread:
            rp.status, rp.message = Status.FAILED, f"observe: {why_unread}"
        elif live is None:
            rp.action, rp.message = Action.NOOP, "already gone from AWS"
        elif rec.annotations.get(ANNOTATION_PRUNE, "").strip().lower() == "false":
            rp.status, rp.message = Status.RETAINED, 'lensops.io/prune: "false"'
        elif not prune:
            orphan = "not in Git; sync.prune is off"
            rp.status, rp.message = Status.ORPHAN, f"{note}; {orphan}" if note else orphan
        else:
            rp.message = note
        decisions.append((rp, rec, live))
    return decisions


def retain_unproven(decisions: list[tuple[ResourcePlan, ResourceRecord, Live | None]], environment: str) -> None:
    """In a decommission: a delete is made only where the resource's ownership tags, for a kind whose
    tags were read, say lensops made it for ``environment`` as that record; another is left in AWS
    (``retained``) and said why. Kinds without tags (Dashboard, LambdaAlias) rest on the record alone."""
    for rp, rec, live in decisions:
        if not rp.pending or live is None or not live.tags_read or (live.owner, live.owner_env) == (rec.ident, environment):
            continue
        rp.status = Status.RETAINED
        if live.owner_env:
            rp.message = f"not deleted: its tags say lensops environment {live.owner_env!r} ({live.owner}) owns it"
        else:
            rp.message = "not deleted: it carries no lensops ownership tags for this environment, so lensops cannot prove it made it"


def decommission_guard(deletes: int, managed: int, environment: str) -> str:
    """Why a decommission that deletes ``deletes`` of ``managed`` resources needs ``--allow-mass-prune``, or ''.

    It deletes the whole environment: any delete needs the allowance."""
    if not deletes:
        return ""
    return (
        f"decommissioning environment {environment!r} deletes {deletes} of its {managed} managed resources; "
        "pass --allow-mass-prune"
    )


def mass_prune_guard(deletes: int, managed: int, has_targets: bool) -> str:
    """Why deleting ``deletes`` of ``managed`` resources needs an explicit allowance, or ''."""
    if not deletes:
        return ""
    if not has_targets and managed > 0:
        return "this revision leaves the environment with no manifests; set sync.allowMassPrune or pass --allow-mass-prune"
    if deletes > MASS_PRUNE_FRACTION * managed:
        return (
            f"this revision deletes {deletes} of {managed} managed resources (more than 10 %); "
            "set sync.allowMassPrune or pass --allow-mass-prune"
        )
    return ""
