"""The one writer: every change lensops makes to AWS goes through here.

Apply, prune, self-heal, the health gate's rollback, a rollout step and the
rollback runbook are all passes of the engine, and each of their writes is
made by a ``Writer``: the journal first (the intent, and what the resource
was at the healthy point), then the reconciler's create, update or delete,
``settle`` until AWS has finished, then the record, the metrics, the log line
and the history row. A rollback is therefore applied exactly as an apply is:
a Stack through an executed change set, a web ACL under its lock token, an
alias with its routing.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from controller import logs, metrics
from controller.diff import diff
from controller.engine.decide import Decision, spec_hash
from controller.engine.journal import Journal
from controller.engine.targets import Target, desired_record
from controller.errors import PermanentError
from controller.plan import Action, ResourcePlan, Status
from controller.state import ResourceRecord, StateStore
from controller.kinds import Desired, Live, Reconciler

log = logs.get("lensops.engine")


@dataclass
class Settling:
    """A change AWS is still working on, to be re-checked later."""

    target: Target
    reconciler: Reconciler
    desired: Desired
    state: dict[str, Any]
    live: Live
    deadline: float

    @property
    def interval(self) -> float:
        return self.reconciler.settle_interval


class History:
    """The pass's row in ``lensops history``: started by the first write (or at once for a new revision)."""

    def __init__(self, store: StateStore, environment: str, revision: str, trigger: str):
        self.store = store
        self.environment = environment
        self.revision = revision
        self.trigger = trigger
        self.id = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if not self.id:
                self.id = self.store.start_revision(self.environment, self.revision, self.trigger)

    def finish(self, result: str, message: str, changes: list[dict[str, Any]]) -> None:
        if self.id:
            self.store.finish_revision(self.id, result, message, changes)


class Writer:
    """Writes one pass's changes to AWS and records each of them."""

    def __init__(
        self,
        store: StateStore,
        environment: str,
        revision: str,
        journal: Journal,
        history: History,
        inventory: dict[str, ResourceRecord],
        *,
        rollback: bool,
        retry_failed: bool,
        publish: Callable[[Target, Live], None],
        report: Callable[[ResourcePlan], None],
    ):
        self.store = store
        self.environment = environment
        self.revision = revision
        self.journal = journal
        self.history = history
        self.inventory = inventory
        self.rollback = rollback
        """A health-gate rollback: each write is also counted in ``lensops_rollbacks_total``."""
        self.retry_failed = retry_failed
        self.publish = publish
        self.report = report
        self.applied: list[dict[str, Any]] = []
        self.rollouts: list[dict[str, Any]] = []
        self._digests: dict[str, tuple[dict[str, Any], str]] = {}
        """Kind/name -> (the state decided, its digest): the spec a permanent error is kept against."""
        self._lock = threading.Lock()

    # --- create and update -------------------------------------------------

    def write(
        self, target: Target, decision: Decision, reconciler: Reconciler, desired: Desired, live: Live | None, deps: list[str], rollouts: bool
    ) -> Settling | None:
        """Create or update one resource (or start its rollout); a change AWS is still making is returned to settle."""
        rp, state, digest = decision.plan, decision.state, decision.digest
        known = self.journal.failure(target.ident)
        if known and not self.retry_failed and known["hash"] == digest and known["revision"] == self.revision:
            rp.status = Status.FAILED
            rp.message = f"{known['message']} (not retried until the spec or the revision changes)"
            return None
        with self._lock:
            self._digests[target.ident] = (state, digest)
        self.history.start()
        self.journal.intend(target.ident, target.physical, digest)
        self.journal.changing(target.ident, self.was(target, reconciler, desired, state, live, deps), target.physical if live is None else None)
        if live is None:
            result = reconciler.create(desired, state)
        else:
            steps = reconciler.rollout_steps(desired, state, live) if rollouts else []
            if steps:
                self._start_rollout(target, rp, reconciler, desired, state, live, steps, deps)
                return None
            result = reconciler.update(desired, state, live, rp.changes)
        settled = reconciler.settle(desired, result)
        if settled is None:
            log.info("resource_progressing", environment=self.environment, revision=self.history.revision, kind=target.kind, name=target.name, action=rp.action)
            return Settling(target, reconciler, desired, state, result, time.monotonic() + reconciler.settle_timeout)
        self.finish(target, rp, settled, state, desired, deps)
        return None

    def settle(self, settling: Settling, rp: ResourcePlan, deps: list[str]) -> Settling | None:
        """Re-check a change AWS was still making; PermanentError once it has taken too long."""
        live = settling.reconciler.settle(settling.desired, settling.live)
        if live is not None:
            self.finish(settling.target, rp, live, settling.state, settling.desired, deps)
            return None
        if time.monotonic() > settling.deadline:
            raise PermanentError(f"still in progress after {settling.reconciler.settle_timeout:.0f}s")
        return settling

    def was(self, target: Target, reconciler: Reconciler, desired: Desired, state: dict[str, Any], live: Live | None, deps: list[str]) -> dict[str, Any]:
        """What a resource is before this pass first changes it since the healthy point."""
        record = self.inventory.get(target.ident)
        if record is not None and record.desired is not None:
            return {"was": "recorded", "desired": record.desired}
        if live is None:
            return {"was": "absent", "physical": target.physical}
        # Not recorded: adopted now (or owned by its tags only, the store having lost it).
        return {"was": "adopted", "desired": desired_record(desired, deps), "state": reconciler.adoption_state(live, state)}

    def adopted(self, target: Target, reconciler: Reconciler, desired: Desired, state: dict[str, Any], live: Live, deps: list[str]) -> None:
        """An adoption that needed no write: still a change since the healthy point (lensops now manages it)."""
        self.journal.changing(target.ident, self.was(target, reconciler, desired, state, live, deps))

    def _start_rollout(
        self,
        target: Target,
        rp: ResourcePlan,
        reconciler: Reconciler,
        desired: Desired,
        state: dict[str, Any],
        live: Live,
        steps: list[dict[str, Any]],
        deps: list[str],
    ) -> None:
        """Apply the first step of a progressive delivery; the health gate drives the rest (``Engine.step``)."""
        first = steps[0]
        result = reconciler.update(desired, first, live, diff(first, reconciler.compare_view(live, first)))
        rollout = {
            "ident": target.ident,
            "kind": target.kind,
            "name": target.name,
            "physical": target.physical,
            "steps": steps,
            "final": state,
            "index": 0,
            "interval": reconciler.rollout_interval(desired),
            "step_started_at": time.time(),
            "desired": desired_record(desired, deps),
        }
        with self._lock:
            self.rollouts.append(rollout)
        log.info("rollout_started", environment=self.environment, revision=self.history.revision, kind=target.kind, name=target.name, steps=len(steps) + 1)
        self.finish(target, rp, result, first, desired, deps)
        rp.status, rp.message = Status.PROGRESSING, f"rollout started: step 1 of {len(steps) + 1}"

    def finish(self, target: Target, rp: ResourcePlan, result: Live, state: dict[str, Any], desired: Desired, deps: list[str]) -> None:
        """Count, log, publish and record a change that AWS has completed."""
        self.journal.forget_failure(target.ident)
        self._count(target.kind, rp.action)
        event = "resource_rolled_back" if self.rollback else "resource_applied"
        log.info(event, environment=self.environment, revision=self.history.revision, kind=target.kind, name=target.name, action=rp.action, fields=[c.path for c in rp.changes][:20])
        self.publish(target, result)
        self.settled(target, result, state, desired, deps, changed=True)
        self.journal.done(target.ident)
        with self._lock:
            self.applied.append({"kind": target.kind, "name": target.name, "action": rp.action, "fields": [c.path for c in rp.changes]})
        self.report(rp)

    def settled(
        self, target: Target, live: Live | None, state: dict[str, Any], desired: Desired, deps: list[str], changed: bool, digest: str = ""
    ) -> None:
        """Record the resource as applied and in sync (only when something changed). In a rollback
        the record comes first, then the journal entry goes: the resource is back as it was at the
        healthy point (an adoption undone is no longer managed: its record goes)."""
        if self.rollback and target.forget:
            self.store.delete_resource(self.environment, target.kind, target.name)
        else:
            self._record(target, live, state, desired, deps, changed, digest)
        if self.rollback:
            self.journal.put_back(target.ident, target.physical)

    def _record(
        self, target: Target, live: Live | None, state: dict[str, Any], desired: Desired, deps: list[str], changed: bool, digest: str
    ) -> None:
        record = self.inventory.get(target.ident)
        if not digest:
            known = self._digests.get(target.ident)
            digest = known[1] if known is not None and known[0] is state else spec_hash(state)
        if (
            not changed
            and record is not None
            and record.spec_hash == digest
            and record.sync == "synced"
            and record.physical == target.physical
            and record.annotations == target.annotations
        ):
            return
        self.store.put_resource(
            ResourceRecord(
                environment=self.environment,
                kind=target.kind,
                name=target.name,
                physical=target.physical,
                arn=(live.arn if live else "") or (record.arn if record else ""),
                spec=state,
                revision=self.revision,
                sync="synced",
                health="healthy",
                spec_hash=digest,
                annotations=dict(target.annotations),
                desired=desired_record(desired, deps),
            )
        )

    # --- failures --------------------------------------------------------

    def failed(self, target: Target, error: Exception | None, message: str) -> None:
        """Keep a permanent error against the spec that caused it, and mark the record failed."""
        known = self._digests.get(target.ident)
        if known is not None and isinstance(error, PermanentError):
            self.journal.fail(target.ident, {"hash": known[1], "revision": self.revision, "message": str(error), "at": time.time()})
        record = self.inventory.get(target.ident)
        if record is not None:
            record.sync, record.health, record.message = "unknown", "degraded", message
            self.store.put_resource(record)

    # --- delete ------------------------------------------------------------

    def delete(self, rec: ResourceRecord, rp: ResourcePlan, reconciler: Reconciler, live: Live, keep_record: bool) -> None:
        """Delete one resource lensops owns (prune, or a rollback of what it created since the healthy point).

        The intent is written first (behind the lease's fence, like every write of the pass), and
        what the resource was at the healthy point; the record goes once AWS has deleted it."""
        self.history.start()
        self.journal.intend(rec.ident, rec.physical, Action.DELETE)
        self.journal.pruned(rec.ident, rec.physical, {"was": "recorded", "desired": rec.desired} if rec.desired is not None else None)
        reconciler.delete(live)
        self.gone(rec, keep_record)
        self._count(rec.kind, Action.DELETE)
        event = "resource_rolled_back" if self.rollback else "resource_pruned"
        log.info(event, environment=self.environment, revision=self.history.revision, kind=rec.kind, name=rec.name, physical=rec.physical, action=Action.DELETE)
        with self._lock:
            self.applied.append({"kind": rec.kind, "name": rec.name, "action": Action.DELETE.value, "fields": []})
        self.report(rp)

    def gone(self, rec: ResourceRecord, keep_record: bool) -> None:
        """A resource lensops owned is gone from AWS: its record goes (unless the record is another
        name's of the same resource), then, in a rollback, that name leaves the journal, then any intent."""
        recorded = self.inventory.get(rec.ident)
        if not keep_record and recorded is not None and recorded.physical == rec.physical:
            self.store.delete_resource(rec.environment, rec.kind, rec.name)
        if self.rollback:
            self.journal.put_back(rec.ident, rec.physical)
        if self.journal.intent(rec.ident) is not None:
            self.journal.done(rec.ident)

    def _count(self, kind: str, action: str) -> None:
        metrics.APPLIED_CHANGES.labels(self.environment, kind, action).inc()
        if self.rollback:
            metrics.ROLLBACKS.labels(self.environment, kind).inc()
