"""The engine's passes: observe -> decide and write in dependency order -> prune -> record.

A pass reads every kind once (batched, kinds in parallel), decides per
resource with the pure functions of ``decide.py``, writes through the one
``Writer`` in dependency order (``schedule.py``; independent resources
concurrently, bounded by ``LENSOPS_CONCURRENCY``), deletes what it no longer
wants, and records the outcome. There are three kinds of pass, one engine:

- ``reconcile``: the environment's manifests (plan, apply, self-heal, and the
  rollback runbook's older revision), pruning what Git no longer has;
- ``restore``: the health gate's rollback, a reconcile to the healthy point
  (the journal's changes since then), deleting only what lensops created since;
- ``step``: one step of a progressive delivery, for the health gate;
- ``decommission``: an environment removed from Git (``lensops decommission``):
  what lensops owns there deleted, then its records.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from controller import logs, metrics, pacing
from controller.aws import ClientFactory
from controller.engine.journal import CHANGES, FAILURES, INTENTS, POINT_KEY, Journal
from controller.engine.targets import Target, healthy_point
from controller.engine.walk import Pass
from controller.engine.write import History, Writer
from controller.manifests.model import EnvironmentDesired
from controller.manifests.types import parse_duration
from controller.plan import Action, Plan, ResourcePlan, Status
from controller.state import EnvironmentRecord, StateStore
from controller.kinds import Context, HealthGate, ReadCache, Registry

log = logs.get("lensops.engine")

BAKE_KEY = "bake"
"""Where an environment's record keeps its health gate (controller/health.py)."""
BASELINE_KEY = "baseline"
"""Where an environment's record keeps its baseline: the first revision applied, the healthy
point until a bake passes."""
APPLIED_DIGEST = "applied_digest"
"""Where an environment's record keeps the content digest of its applied revision."""
FAILED_DIGEST = "failed_digest"
"""Where an environment's record keeps the content digest of the revision that failed its bake:
held until a commit changes the environment's content and is applied."""
HEALTHY_DIGEST = "healthy_digest"
"""Where an environment's record keeps the content digest of its healthy revision."""
LAST_PASS_KEY = "last_pass"
"""Where an environment's record keeps a summary of its last pass (``lensops status``)."""
TARGET_KEY = "target"
"""Where an environment's record keeps the region, account and role its last pass worked in:
what ``lensops decommission`` reaches AWS with once the Environment manifest has left Git."""
DECOMMISSIONED = "decommissioned"
"""The status of an environment removed from Git whose resources ``lensops decommission`` deleted."""
LAST_DRIFT_KEY = "last_drift"
"""Where an environment's record keeps the last drift a pass found: when, at which revision, and per
resource the drifted fields (paths, never values) and whether the pass put it back."""
REFUSED_KEY = "invalid"
"""Where an environment's record keeps the revision the daemon refused (invalid manifests) and its
problems, from the refusal until a newer commit of the environment loads (``lensops status``)."""


@dataclass
class Outcome:
    """What a pass did: the plan as decided, what was written, and the result."""

    plan: Plan
    result: str = "success"
    applied: list[dict[str, Any]] = field(default_factory=list)
    duration: float = 0.0
    started_at: float = 0.0
    """Wall-clock time the pass started (alarms in ALARM since then fired during it)."""
    rollouts: list[dict[str, Any]] = field(default_factory=list)
    """Progressive deliveries this pass started (their first step is applied)."""
    unbaked: bool = False
    """After a recorded apply: the environment has changes since its healthy point (a bake's to watch)."""
    interrupted: bool = False
    """The pass stopped before its end: lensops is shutting down, or the lease moved on."""

    @property
    def ok(self) -> bool:
        return self.result == "success"


_PUT_BACK = {Action.UPDATE: "restored", Action.CREATE: "recreated", Action.DELETE: "deleted"}


def put_back(applied: list[dict[str, Any]]) -> str:
    """What a rollback wrote, for people: ``MetricAlarm/api-5xx restored, Topic/extra deleted``."""
    return ", ".join(f"{a['kind']}/{a['name']} {_PUT_BACK.get(a['action'], a['action'])}" for a in applied) or "nothing"


def content_changed(env: EnvironmentDesired, record: EnvironmentRecord | None) -> bool:
    """Whether ``env``'s content is not what the environment last applied (a new revision)."""
    if record is None:
        return True
    applied = record.data.get(APPLIED_DIGEST)
    if applied is None:  # recorded before content digests: the commit decides
        return record.applied_revision != env.revision
    return bool(applied != env.digest)


def healthy_revision(record: EnvironmentRecord | None) -> tuple[str, str]:
    """(commit, content digest) of the environment's healthy point: its last passed bake, or its
    baseline before any; ('', '') when it has neither."""
    if record is None:
        return "", ""
    if record.healthy_revision:
        return record.healthy_revision, str(record.data.get(HEALTHY_DIGEST, ""))
    baseline = record.data.get(BASELINE_KEY) or {}
    return str(baseline.get("revision", "")), str(baseline.get("digest", ""))


def failed_content(record: EnvironmentRecord | None, env: EnvironmentDesired) -> bool:
    """Whether ``env``'s content is the one that failed the environment's last failed bake."""
    if record is None or not record.failed_revision:
        return False
    failed = record.data.get(FAILED_DIGEST)
    if failed:
        return bool(failed == env.digest)
    return record.failed_revision == env.revision  # failed before content digests: the commit decides


def healthy_point_number(record: EnvironmentRecord | None) -> int:
    return int(record.data.get(POINT_KEY, 0)) if record else 0


def on_baseline(env: EnvironmentDesired, record: EnvironmentRecord | None) -> bool:
    """Whether a pass of ``env`` writes the environment's baseline: it has never passed a bake,
    and this is its first applied revision (or nothing has been applied yet)."""
    if record is None:
        return True
    if record.healthy_revision:
        return False
    baseline = record.data.get(BASELINE_KEY)
    return baseline is None or baseline.get("digest") == env.digest


class Engine:
    """Plans and applies environments against AWS, recording into a state store."""

    def __init__(self, factory: ClientFactory, store: StateStore, registry: Registry, concurrency: int = 8):
        self.factory = factory
        self.registry = registry
        self.store = store
        self.concurrency = max(1, concurrency)
        self.stopping = threading.Event()
        """Set on shutdown: passes stop before their next resource (a safe point)."""
        self.reads = ReadCache()
        """Reads kept under their change markers for this engine's life (the daemon's resyncs)."""

    def context(self, env: EnvironmentDesired, account: str, execute: bool = False, rollback: bool = False) -> Context:
        """A pass's context; while rolling back, without the health gate (CloudFormation must not
        undo the rollback on the very alarms that called for it)."""
        health = env.spec.health
        names = env.alarm_names(health.alarms) if health.rollback == "auto" and not rollback else []
        alarms = [f"arn:aws:cloudwatch:{env.spec.region}:{account}:alarm:{name}" for name in names]
        return Context(
            environment=env.name,
            region=env.spec.region,
            account=account,
            role_arn=env.spec.assumeRoleArn or "",
            factory=self.factory,
            execute=execute,
            gate=HealthGate(tuple(alarms), parse_duration(health.bakeTime)),
            reads=self.reads,
            settings=env.spec.model_dump(mode="json"),
        )

    # --- the three passes ------------------------------------------------

    def reconcile(
        self,
        env: EnvironmentDesired,
        account: str,
        *,
        execute: bool,
        record: bool = True,
        allow_mass_prune: bool = False,
        trigger: str = "cli",
        retry_failed: bool = True,
        keep_status: bool = False,
        on_resource: Callable[[ResourcePlan], None] | None = None,
        on_forecast: Callable[[list[tuple[str, Action]]], None] | None = None,
        may_write: Callable[[], bool] | None = None,
        store: StateStore | None = None,
    ) -> Outcome:
        """One pass over an environment's manifests: plan only (``execute=False``) or apply.

        With ``retry_failed`` off (the daemon), a resource that failed with a
        permanent error is not tried again until its spec or the revision changes.
        ``keep_status`` leaves the environment's status as it is (a held revision).
        ``store`` is the state store to write through (the daemon's, fenced on its lease).
        ``on_forecast`` is told, before an apply's first write, the (kind, action) of each write
        it will probably make (``Pass.expected``: for the CLI's time estimate).
        """
        started_at = time.time()
        store = store or self.store
        env_record = store.environment(env.name)
        baseline = execute and on_baseline(env, env_record)
        history = History(store, env.name, env.revision, trigger)
        if record and execute and content_changed(env, env_record):
            history.start()  # a new revision has its row even when it changes nothing
        run = self._pass(
            env, account, store, env_record, [Target.of(r) for r in env.resources], history,
            execute=execute, rollback=False, record_changes=not baseline, retry_failed=retry_failed, on_resource=on_resource, may_write=may_write,
        )
        run.env_unknown = not execute and env_record is None and not run.inventory
        run.observe([*run.inventory.values(), *run.unrecorded()])
        if execute and on_forecast is not None:
            on_forecast(run.expected(prune=env.spec.sync.prune))
        outcome = Outcome(run.plan, started_at=started_at)
        try:
            run.walk(rollouts=True)
            wanted = {(t.ident, t.physical) for t in run.targets}
            run.prune(
                [rec for rec in run.inventory.values() if (rec.ident, rec.physical) not in wanted] + run.abandoned(wanted),
                enabled=env.spec.sync.prune,
                guard=not (allow_mass_prune or env.spec.sync.allowMassPrune),
            )
        finally:
            self._finish(run, outcome, may_write)
            if record:
                written = self._record(run, outcome, keep_status=keep_status, baseline=baseline)
                outcome.unbaked = bool(run.journal.changes) or (baseline and BASELINE_KEY in written.data)
        return outcome

    @pacing.urgent()
    def restore(
        self,
        env: EnvironmentDesired,
        account: str,
        *,
        failed: str,
        only: set[str] | None = None,
        may_write: Callable[[], bool] | None = None,
        store: StateStore | None = None,
    ) -> Outcome:
        """The health gate's rollback of revision ``failed``: a reconcile of the environment to its healthy point.

        Each resource changed since the healthy point (``only`` these, when given)
        goes back to what it was then, with an apply's semantics; what lensops
        created since is deleted, but not where the resource's restore under its
        healthy name failed. Each resource put back leaves the journal, so an
        interrupted restore is resumed where it stopped. The history row is
        ``failed``'s, trigger ``rollback``; the result is ``rolled_back``, or
        ``failed`` when something could not be put back or nothing had changed. Its AWS
        requests go first among those waiting for the API rates (``pacing.urgent``).
        """
        started_at = time.time()
        store = store or self.store
        env_record = store.environment(env.name)
        history = History(store, env.name, failed, "rollback")
        run = self._pass(
            env, account, store, env_record, [], history, execute=True, rollback=True, record_changes=False,
            retry_failed=True, on_resource=None, may_write=may_write, revision=healthy_revision(env_record)[0],
        )
        run.targets, deletes, unproven = healthy_point(env.name, run.journal.changes, run.inventory, only)
        run.active = {}  # a rollout in progress is rolled back with the rest, not left to step
        run.observe(deletes)
        outcome = Outcome(run.plan, started_at=started_at)
        history.start()
        try:
            run.walk(rollouts=False)
            unsettled = {ident: rp for ident, rp in run.decisions.items() if rp.status != Status.OK}
            for rec in [r for r in deletes if r.ident in unsettled]:
                why = f"kept while {rec.ident} is not back under its healthy name ({unsettled[rec.ident].message})"
                run.plan.resources.append(ResourcePlan(rec.kind, rec.name, rec.physical, Action.DELETE, status=Status.BLOCKED, message=why))
            run.prune([r for r in deletes if r.ident not in unsettled], enabled=True, guard=False, unproven=unproven)
        finally:
            self._finish(run, outcome, may_write)
            if not outcome.plan.resources:
                outcome.result = "failed"
            elif not outcome.plan.failed:
                outcome.result = "rolled_back"
            result = "interrupted" if outcome.interrupted else outcome.result
            history.finish(result, f"put back: {put_back(outcome.applied)}", outcome.applied)
        return outcome

    def decommission(
        self,
        env: EnvironmentDesired,
        account: str,
        *,
        execute: bool,
        allow_mass_prune: bool = False,
        on_resource: Callable[[ResourcePlan], None] | None = None,
    ) -> Outcome:
        """Delete what lensops owns in ``env``, an environment removed from Git (``env`` holds no
        resources: only where it was, and the revision it is gone from).

        Every resource the state store records for it is a delete, dependents first, as prune
        makes them; never one annotated ``lensops.io/prune: "false"``, nor one whose ownership tags
        (where its kind has them) do not say lensops made it for this environment: those are left
        in AWS, and reported. Any delete needs ``allow_mass_prune`` (it is the whole environment).
        Once every delete is made, the environment's records and journal go, and its record says
        ``decommissioned``; a delete that failed leaves the records for the next attempt.
        """
        started_at = time.time()
        env_record = self.store.environment(env.name)
        history = History(self.store, env.name, env.revision, "decommission")
        run = self._pass(
            env, account, self.store, env_record, [], history, execute=execute, rollback=False, record_changes=False,
            retry_failed=True, on_resource=on_resource, may_write=None,
        )
        records = list(run.inventory.values())
        run.observe([*records, *run.unrecorded()])
        outcome = Outcome(run.plan, started_at=started_at)
        try:
            run.prune(records + run.abandoned(set()), enabled=True, guard=not allow_mass_prune, decommission=True)
        finally:
            self._finish(run, outcome, None)
            if execute:
                history.finish(outcome.result, "; ".join((run.plan.errors + run.plan.failures())[:5]) or "decommissioned", outcome.applied)
        if execute and outcome.ok:
            self._decommissioned(env.name, run.plan)
        return outcome

    def _decommissioned(self, name: str, plan: Plan) -> None:
        """What lensops kept of a decommissioned environment goes: its resource records (those left
        in AWS too: lensops no longer manages them), its journal, and its record's data."""
        for rec in self.store.resources(name).values():
            self.store.delete_resource(name, rec.kind, rec.name)
        for namespace in (INTENTS, FAILURES, CHANGES):
            for key, _, _ in self.store.list_items(namespace, f"{name}/"):
                self.store.delete_item(namespace, key)
        deleted = sum(1 for rp in plan.resources if rp.action == Action.DELETE and rp.status == Status.OK)
        left = [f"{rp.ident} ({rp.message})" for rp in plan.resources if rp.status == Status.RETAINED]
        message = f"decommissioned: {deleted} resource{'s' if deleted != 1 else ''} deleted"
        if left:
            message += f"; left in AWS, no longer managed: {', '.join(left[:10])}" + (f" (+{len(left) - 10} more)" if len(left) > 10 else "")
        self.store.put_environment(EnvironmentRecord(name, status=DECOMMISSIONED, message=message, last_sync=time.time()))
        log.info("environment_decommissioned", environment=name, revision=plan.revision, deleted=deleted, left=len(left))

    def step(
        self,
        env: EnvironmentDesired,
        account: str,
        rollout: dict[str, Any],
        state: dict[str, Any],
        *,
        revision: str,
        may_write: Callable[[], bool] | None = None,
        store: StateStore | None = None,
    ) -> Outcome:
        """One step of a progressive delivery of ``revision``: the resource taken to ``state`` through the writer."""
        started_at = time.time()
        store = store or self.store
        env_record = store.environment(env.name)
        target = Target.recorded(rollout["kind"], rollout["name"], rollout["desired"], state=state)
        history = History(store, env.name, revision, "rollout")
        run = self._pass(
            env, account, store, env_record, [target], history, execute=True, rollback=False,
            record_changes=not on_baseline(env, env_record), retry_failed=True, on_resource=None, may_write=may_write,
        )
        run.active = {}  # this pass is the rollout's own step
        run.observe([])
        outcome = Outcome(run.plan, started_at=started_at)
        try:
            run.walk(rollouts=False)
        finally:
            self._finish(run, outcome, may_write)
            history.finish(outcome.result, "; ".join(f"{r.ident}: {r.message}" for r in run.plan.resources if r.message), outcome.applied)
        return outcome

    # --- plumbing ----------------------------------------------------------

    def _pass(
        self,
        env: EnvironmentDesired,
        account: str,
        store: StateStore,
        env_record: EnvironmentRecord | None,
        targets: list[Target],
        history: History,
        *,
        execute: bool,
        rollback: bool,
        record_changes: bool,
        retry_failed: bool,
        on_resource: Callable[[ResourcePlan], None] | None,
        may_write: Callable[[], bool] | None,
        revision: str | None = None,
    ) -> Pass:
        ctx = self.context(env, account, execute, rollback)
        journal = Journal(store, env.name, healthy_point_number(env_record), record_changes, load_changes=execute)
        gate = (env_record.data.get(BAKE_KEY) if env_record else None) or {}
        run = Pass(
            store, self.registry, ctx, env, targets, store.resources(env.name), journal, Plan(env.name, env.revision),
            execute=execute, concurrency=self.concurrency, stopping=self.stopping,
            active={r["ident"]: r for r in gate.get("rollouts", [])}, on_resource=on_resource, may_write=may_write,
        )
        run.writer = Writer(
            store, env.name, revision if revision is not None else env.revision, journal, history, run.inventory,
            rollback=rollback, retry_failed=retry_failed, publish=run.publish, report=run.report,
        )
        return run

    def _finish(self, run: Pass, outcome: Outcome, may_write: Callable[[], bool] | None) -> None:
        outcome.applied = run.writer.applied
        outcome.rollouts = run.writer.rollouts
        outcome.duration = time.monotonic() - run.started
        outcome.result = "failed" if run.plan.failed else "success"
        outcome.interrupted = run.execute and (self.stopping.is_set() or (may_write is not None and not may_write()))

    def _record(self, run: Pass, outcome: Outcome, *, keep_status: bool, baseline: bool) -> EnvironmentRecord:
        """The environment's record, metrics, history row and canonical log line after a pass."""
        env, plan, execute = run.env, run.plan, run.execute
        name = env.name
        revision = run.writer.history.revision
        counts: dict[tuple[str, str, str], int] = {}
        drift: list[dict[str, Any]] = []
        for rp in plan.resources:
            if rp.action == Action.DELETE and rp.status == Status.OK and execute:
                continue
            sync = "unknown" if rp.status == Status.FAILED else ("synced" if (rp.action == Action.NOOP or (execute and rp.status == Status.OK)) else "out_of_sync")
            health = {Status.FAILED: "degraded", Status.CONFLICT: "degraded", Status.BLOCKED: "unknown", Status.PROGRESSING: "progressing"}.get(
                rp.status, "healthy" if sync == "synced" else "unknown"
            )
            if rp.status == Status.FAILED:
                health = "unknown" if rp.message.startswith("observe:") else "degraded"
            key = (rp.kind, sync, health)
            counts[key] = counts.get(key, 0) + 1
            if rp.drift:
                metrics.DRIFT_DETECTED.labels(name, rp.kind).inc()
                # Paths only: a value may be a seal or a secret another tool wrote.
                fields, reverted = [c.path for c in rp.drift][:20], execute and rp.status == Status.OK
                log.warning("drift_detected", environment=name, revision=revision, kind=rp.kind, name=rp.name, fields=fields, reverted=reverted)
                drift.append({"resource": rp.ident, "fields": fields, "reverted": reverted})
        metrics.set_resource_counts(name, counts)
        metrics.RECONCILE_DURATION.labels(name).observe(outcome.duration)
        metrics.count_result(name, outcome.result)
        previous = run.store.environment(name) or EnvironmentRecord(name)
        drifted = [rp.ident for rp in plan.resources if rp.drift]
        failed = plan.failures()
        data = dict(previous.data)
        data[LAST_PASS_KEY] = {
            "revision": env.revision,
            "executed": execute,
            "result": outcome.result,
            "counts": plan.counts(),
            "drifted": drifted[:100],
            "reverted": [d["resource"] for d in drift if d["reverted"]][:100],
            "errors": (plan.errors + failed)[:100],
            "orphans": [f"{rp.ident} ({rp.physical}): {rp.message}" for rp in plan.resources if rp.status == Status.ORPHAN][:100],
            "at": time.time(),
        }
        if drift:  # kept past the passes that find none: which resource drifted, and whether it was put back
            data[LAST_DRIFT_KEY] = {"at": time.time(), "revision": revision, "resources": drift[:100]}
        if not keep_status:
            if execute:
                previous.message = "; ".join((plan.errors + failed)[:5])
            if plan.failed:
                previous.status = "failed"
            elif BAKE_KEY in data:
                previous.status = "baking"
            else:
                previous.status = "out_of_sync" if (plan.has_changes and not execute) else "synced"
        if execute and outcome.ok:
            previous.applied_revision = env.revision
            data[APPLIED_DIGEST] = env.digest
            if env.revision:
                metrics.set_applied_revision(name, env.revision)
            forward = run.writer.history.trigger not in ("rollback", "hold")  # the runbook's older revision ends no hold
            if forward and previous.failed_revision and not failed_content(previous, env):
                # Other content than the one that failed its bake is applied: that hold is over.
                data.pop(FAILED_DIGEST, None)
                previous.failed_revision = ""
        data[TARGET_KEY] = {"region": env.spec.region, "account": run.ctx.account, "roleArn": run.ctx.role_arn}
        if execute and baseline and outcome.applied and BASELINE_KEY not in data:
            data[BASELINE_KEY] = {"revision": env.revision, "digest": env.digest}
        if not plan.failed:
            # A pass that only checked (a sync window, no self-heal) still
            # proves lensops sees the environment: it counts as a sync.
            previous.last_sync = time.time()
            metrics.LAST_SYNC.labels(name).set(previous.last_sync)
        previous.data = data
        run.writer.history.finish(outcome.result, previous.message, outcome.applied)
        run.store.put_environment(previous)
        log.info(
            "reconcile_finished",
            environment=name,
            revision=env.revision,
            executed=execute,
            result=outcome.result,
            duration_s=round(outcome.duration, 3),
            **{k: v for k, v in plan.counts().items()},
            drifted=len(drifted),
        )
        return previous
