"""Plan and apply one environment: observe -> diff -> apply along the graph -> prune -> record.

One pass reads every kind once (batched, kinds in parallel), decides per
resource with the one generic differ, applies independent resources
concurrently (bounded by ``LENSOPS_CONCURRENCY``) in dependency order,
prunes what Git no longer has (only what lensops owns, only with
``sync.prune``), and records the outcome in the state store. The engine
owns ordering, retries and time; reconcilers only read and write.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable

from controller import logs, metrics
from controller.aws import ClientFactory
from controller.diff import Change, diff
from controller.errors import LensopsError, PermanentError, classify
from controller.manifests.graph import REF_RE
from controller.manifests.types import parse_duration
from controller.manifests.model import (
    ANNOTATION_ADOPT,
    ANNOTATION_PRUNE,
    ANNOTATION_SUSPEND,
    EnvironmentDesired,
    Resource,
)
from controller.plan import KNOWN_AFTER_APPLY, Plan, ResourcePlan
from controller.state import EnvironmentRecord, ResourceRecord, StateStore
from reconcilers.base import KINDS, OWNER_ENV_TAG, OWNER_ID_TAG, Context, Desired, Live, ReadCache, Reconciler

log = logs.get("lensops.engine")

MASS_PRUNE_FRACTION = 0.10


@dataclass
class Outcome:
    """What a pass did: the plan as decided, what was written, and the result."""

    plan: Plan
    result: str = "success"
    applied: list[dict[str, Any]] = field(default_factory=list)
    duration: float = 0.0
    started_at: float = 0.0
    """Wall-clock time the pass started (alarms in ALARM since then fired during it)."""
    pruned: list[dict[str, Any]] = field(default_factory=list)
    """The records of resources this pass deleted, to recreate them in a rollback."""
    rollouts: list[dict[str, Any]] = field(default_factory=list)
    """Progressive deliveries this pass started (their first step is applied)."""

    @property
    def ok(self) -> bool:
        return self.result == "success"


def desired_record(desired: Desired, depends_on: list[str] | None = None) -> dict[str, Any]:
    """What the state store keeps of a Desired: to restore or recreate it in a rollback,
    and its dependencies, so that prune deletes dependents first."""
    return {
        "spec": desired.spec,
        "tags": desired.tags,
        "annotations": desired.annotations,
        "physical": desired.physical,
        "dependsOn": sorted(depends_on or []),
    }


def prune_order(records: list[ResourceRecord]) -> list[ResourceRecord]:
    """Records in an order safe to delete: a resource before the ones it depends on."""
    from controller.manifests.graph import topological_order

    by_ident = {r.ident: r for r in records}
    edges = {r.ident: {d for d in (r.desired or {}).get("dependsOn", []) if d in by_ident} for r in records}
    order, _cycle = topological_order(sorted(by_ident), edges)
    order += [i for i in sorted(by_ident) if i not in order]
    return [by_ident[i] for i in reversed(order)]


def desired_from_record(kind: str, name: str, data: dict[str, Any]) -> Desired:
    """The Desired a rollback gives a reconciler, from ``desired_record``'s output."""
    return Desired(kind, name, data["physical"], data["spec"], data.get("tags") or {}, data.get("annotations") or {})


INTENT_NAMESPACE = "intent"
"""State-store items written before a create or update and removed once it is recorded: after a
crash in between, the resource is still known as ours and its new state is not taken for drift."""

FAILURE_NAMESPACE = "failure"
"""State-store items of resources that failed with a permanent error, keyed ``env/Kind/name``."""

BAKE_KEY = "bake"
"""Where an environment's record keeps its health gate (controller/health.py)."""


def active_rollouts(store: StateStore, environment: str) -> dict[str, dict[str, Any]]:
    """The progressive deliveries an environment's health gate is driving, by Kind/name."""
    record = store.environment(environment)
    gate = record.data.get(BAKE_KEY) if record else None
    return {r["ident"]: r for r in (gate or {}).get("rollouts", [])}


def spec_hash(state: dict[str, Any]) -> str:
    """A stable digest of a normalised state (to know when a failed spec changed)."""
    return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()[:16]


class _Unresolved(Exception):
    pass


def resolve_refs(value: Any, outputs: dict[str, dict[str, Any]], strict: bool) -> Any:
    """Replace every ``ref:Kind/name[.attr]`` by the target's ARN or attribute.

    A target not known yet becomes ``(known after apply)`` when planning and is
    an error when applying (``strict``).
    """
    if isinstance(value, str) and value.startswith("ref:"):
        match = REF_RE.match(value)
        if not match:
            return value
        ident = f"{match['kind']}/{match['name']}"
        attr = match["attr"] or "arn"
        found = outputs.get(ident, {}).get(attr)
        if found in (None, ""):
            if strict:
                raise _Unresolved(f"{value}: {ident} has no {attr} yet")
            return KNOWN_AFTER_APPLY
        return found
    if isinstance(value, dict):
        return {k: resolve_refs(v, outputs, strict) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_refs(v, outputs, strict) for v in value]
    return value


class Engine:
    """Plans and applies environments against AWS, recording into a state store."""

    def __init__(self, factory: ClientFactory, store: StateStore, concurrency: int = 8):
        self.factory = factory
        self.store = store
        self.concurrency = max(1, concurrency)
        self.stopping = threading.Event()
        """Set on shutdown: passes stop before their next resource (a safe point)."""
        self.reads = ReadCache()
        """Reads kept under their change markers for this engine's life (the daemon's resyncs)."""

    def context(self, env: EnvironmentDesired, account: str, execute: bool = False) -> Context:
        health = env.spec.health
        alarms: list[str] = []
        if health.rollback == "auto":
            by_ident = env.by_ident()
            for item in health.alarms:
                target = by_ident.get(item[4:].split(".")[0]) if item.startswith("ref:") else None
                name = target.physical if target else ("" if item.startswith("ref:") else item)
                if name:
                    alarms.append(f"arn:aws:cloudwatch:{env.spec.region}:{account}:alarm:{name}")
        return Context(
            environment=env.name,
            region=env.spec.region,
            account=account,
            role_arn=env.spec.assumeRoleArn or "",
            factory=self.factory,
            execute=execute,
            rollback_alarm_arns=tuple(alarms),
            bake_seconds=parse_duration(health.bakeTime),
            reads=self.reads,
        )

    # --- the pass ----------------------------------------------------------

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
        on_resource: Callable[[ResourcePlan], None] | None = None,
        may_write: Callable[[], bool] | None = None,
    ) -> Outcome:
        """One pass over an environment: plan only (``execute=False``) or apply.

        With ``retry_failed`` off (the daemon), a resource that failed with a
        permanent error is not tried again until its spec or the revision changes.
        """
        started = time.monotonic()
        started_at = time.time()
        ctx = self.context(env, account, execute)
        inventory = self.store.resources(env.name)
        plan = Plan(env.name, env.revision)
        observed, failures = self._observe(ctx, env, inventory)
        run = _Pass(self, ctx, env, inventory, observed, failures, plan, execute, retry_failed, on_resource)
        run.may_write = may_write
        history_id = self.store.start_revision(env.name, env.revision, trigger) if (record and execute) else 0
        try:
            run.walk()
            run.prune(allow_mass_prune or env.spec.sync.allowMassPrune)
        finally:
            outcome = Outcome(
                plan, applied=run.applied, duration=time.monotonic() - started, started_at=started_at, pruned=run.pruned, rollouts=run.rollouts
            )
            outcome.result = "failed" if plan.failed else "success"
            if record:
                self._record(env, plan, outcome, execute, history_id)
        return outcome

    def _observe(
        self, ctx: Context, env: EnvironmentDesired, inventory: dict[str, ResourceRecord]
    ) -> tuple[dict[str, dict[str, Live]], dict[str, str]]:
        """Read every kind once, kinds in parallel; a failing kind fails only its resources."""
        wanted: dict[str, list[str]] = {}
        for resource in env.resources:
            wanted.setdefault(resource.kind, []).append(resource.physical)
        for rec in inventory.values():
            wanted.setdefault(rec.kind, []).append(rec.physical)
        observed: dict[str, dict[str, Live]] = {}
        failures: dict[str, str] = {}
        kinds = [k for k in wanted if k in KINDS and KINDS[k].reconciler is not None]

        def read(kind: str) -> tuple[str, dict[str, Live]]:
            reconciler = KINDS[kind].reconciler(ctx)  # type: ignore[misc]
            return kind, reconciler.observe(sorted(set(wanted[kind])))

        with ThreadPoolExecutor(max_workers=min(self.concurrency, max(1, len(kinds)))) as pool:
            futures = {pool.submit(read, kind): kind for kind in kinds}
            for future, kind in futures.items():
                try:
                    observed[kind] = future.result()[1]
                except Exception as exc:  # noqa: BLE001 - mapped onto the taxonomy and reported
                    error = classify(exc)
                    failures[kind] = str(error)
                    log.warning("observe_failed", environment=env.name, kind=kind, error=str(error), retryable=not isinstance(error, PermanentError))
        return observed, failures

    def _record(self, env: EnvironmentDesired, plan: Plan, outcome: Outcome, execute: bool, history_id: int) -> None:
        name = env.name
        counts: dict[tuple[str, str, str], int] = {}
        for rp in plan.resources:
            if rp.action == "delete" and rp.status == "ok" and execute:
                continue
            sync = "unknown" if rp.status == "failed" else ("synced" if (rp.action == "noop" or (execute and rp.status == "ok")) else "out_of_sync")
            health = {"failed": "degraded", "conflict": "degraded", "blocked": "unknown", "progressing": "progressing"}.get(
                rp.status, "healthy" if sync == "synced" else "unknown"
            )
            if rp.status == "failed":
                health = "unknown" if rp.message.startswith("observe:") else "degraded"
            key = (rp.kind, sync, health)
            counts[key] = counts.get(key, 0) + 1
            if rp.drift:
                metrics.DRIFT_DETECTED.labels(name, rp.kind).inc()
        metrics.set_resource_counts(name, counts)
        metrics.RECONCILE_DURATION.labels(name).observe(outcome.duration)
        previous = self.store.environment(name) or EnvironmentRecord(name)
        drifted = [rp.ident for rp in plan.resources if rp.drift]
        failed = [f"{rp.ident}: {rp.message}" for rp in plan.resources if rp.status in ("failed", "conflict", "blocked")]
        previous.data = {
            **previous.data,
            "last_pass": {
                "revision": env.revision,
                "executed": execute,
                "result": outcome.result,
                "counts": plan.counts(),
                "drifted": drifted[:100],
                "errors": (plan.errors + failed)[:100],
                "at": time.time(),
            },
        }
        if execute:
            metrics.RECONCILE_TOTAL.labels(name, outcome.result).inc()
            previous.status = "synced" if outcome.ok else "failed"
            previous.message = "; ".join((plan.errors + failed)[:5])
            if outcome.ok:
                previous.applied_revision = env.revision
                previous.last_sync = time.time()
                metrics.LAST_SYNC.labels(name).set(previous.last_sync)
                if env.revision:
                    metrics.set_applied_revision(name, env.revision)
            if history_id:
                self.store.finish_revision(history_id, outcome.result, previous.message, outcome.applied)
        else:
            previous.status = "failed" if plan.failed else ("out_of_sync" if plan.has_changes else "synced")
            if not plan.failed:
                # A pass that only checked (a sync window, no self-heal) still
                # proves lensops sees the environment: it counts as a sync.
                previous.last_sync = time.time()
                metrics.LAST_SYNC.labels(name).set(previous.last_sync)
        self.store.put_environment(previous)
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


@dataclass
class _Settling:
    """A change AWS is still working on, to be re-checked later."""

    resource: Resource
    reconciler: Reconciler
    desired: Desired
    state: dict[str, Any]
    live: Live
    deadline: float


class _Pass:
    """The state of one pass: decisions, outputs for references, what was written."""

    def __init__(
        self,
        engine: Engine,
        ctx: Context,
        env: EnvironmentDesired,
        inventory: dict[str, ResourceRecord],
        observed: dict[str, dict[str, Live]],
        failures: dict[str, str],
        plan: Plan,
        execute: bool,
        retry_failed: bool = True,
        on_resource: Callable[[ResourcePlan], None] | None = None,
    ):
        self.engine = engine
        self.on_resource = on_resource
        self.may_write: Callable[[], bool] | None = None
        """The daemon's lease check: False once this replica may no longer write."""
        self.retry_failed = retry_failed
        self.permanent = {k.split("/", 1)[1]: v for k, v, _ in engine.store.list_items(FAILURE_NAMESPACE, f"{env.name}/")}
        self.intents = {k.split("/", 1)[1]: v for k, v, _ in engine.store.list_items(INTENT_NAMESPACE, f"{env.name}/")}
        self.state_hash: dict[str, str] = {}
        self.ctx = ctx
        self.env = env
        self.inventory = inventory
        self.observed = observed
        self.failures = failures
        self.plan = plan
        self.execute = execute
        self.outputs: dict[str, dict[str, Any]] = {}
        self.applied: list[dict[str, Any]] = []
        self.pruned: list[dict[str, Any]] = []
        self.rollouts: list[dict[str, Any]] = []
        self.active = active_rollouts(engine.store, env.name)
        self.lock = threading.Lock()
        self.decisions: dict[str, ResourcePlan] = {}
        self.deps: dict[str, set[str]] = {}
        """Kind/name -> what it waits for (dependsOn and reference targets), filled by ``walk``."""
        self.hashes: dict[str, tuple[dict[str, Any], str]] = {}
        self.referring: set[str] = set()
        """Resources whose spec holds a ``ref:``: only theirs are resolved against the outputs."""

    def reconciler(self, kind: str) -> Reconciler | None:
        info = KINDS.get(kind)
        return info.reconciler(self.ctx) if info and info.reconciler else None

    # --- ordering --------------------------------------------------------

    def walk(self) -> None:
        """Decide (and apply) every resource in dependency order, independent ones concurrently."""
        resources = [r for r in self.env.resources if r.kind != "RunbookRun"]
        from controller.manifests.graph import find_refs

        for resource in resources:
            self.decisions[resource.ident] = ResourcePlan(resource.kind, resource.name, resource.physical)
            # What a resource waits for: its dependsOn and the targets of its references.
            refs = {target for _, target, _ in find_refs(resource.spec)}
            if refs:
                self.referring.add(resource.ident)
            self.deps[resource.ident] = (set(resource.depends_on) | refs) - {resource.ident}
        deps = self.deps
        if not self.execute:
            for resource in resources:
                self._one(resource, deps[resource.ident])
        else:
            self._concurrently(resources, deps)
        self.plan.resources.extend(self.decisions[r.ident] for r in resources)

    def _concurrently(self, resources: list[Resource], deps: dict[str, set[str]]) -> None:
        """Run ready resources on the pool; changes still in progress are re-checked when due.

        Linear in the resources: each keeps a count of its unfinished dependencies,
        a finished one releases its dependents onto the ready queue, and at most
        twice the pool's size is in flight, so each wait looks at few futures.
        """
        by_ident = {r.ident: r for r in resources}
        unfinished = {ident: len(d & by_ident.keys()) for ident, d in deps.items()}
        dependents: dict[str, list[str]] = {}
        for ident, d in deps.items():
            for dep in d & by_ident.keys():
                dependents.setdefault(dep, []).append(ident)
        ready = deque(r.ident for r in resources if unfinished[r.ident] == 0)
        limit = 2 * self.engine.concurrency
        running: dict[Future[_Settling | None], str] = {}
        delayed: list[tuple[float, _Settling]] = []
        with ThreadPoolExecutor(max_workers=self.engine.concurrency) as pool:
            while ready or running or delayed:
                while ready and len(running) < limit:
                    ident = ready.popleft()
                    running[pool.submit(self._one, by_ident[ident], deps[ident])] = ident
                if self.engine.stopping.is_set():
                    for _, settling in delayed:
                        rp = self.decisions[settling.resource.ident]
                        rp.status, rp.message = "blocked", "lensops stopped while AWS was still applying this change"
                        self._release(settling.resource.ident, unfinished, dependents, ready)
                    delayed.clear()
                now = time.monotonic()
                due = [d for d in delayed if d[0] <= now]
                if due:
                    delayed = [d for d in delayed if d[0] > now]
                    for _, settling in due:
                        running[pool.submit(self._settle, settling)] = settling.resource.ident
                if not running:
                    if ready:
                        continue
                    if not delayed:
                        break
                    time.sleep(max(0.0, min(d[0] for d in delayed) - time.monotonic()))
                    continue
                timeout = max(0.0, min(d[0] for d in delayed) - time.monotonic()) if delayed else None
                finished, _ = wait(list(running), timeout=timeout, return_when=FIRST_COMPLETED)
                for future in finished:
                    ident = running.pop(future)
                    pending = future.result()
                    if pending is not None:
                        delayed.append((time.monotonic() + pending.reconciler.settle_interval, pending))
                    else:
                        self._release(ident, unfinished, dependents, ready)

    @staticmethod
    def _release(ident: str, unfinished: dict[str, int], dependents: dict[str, list[str]], ready: deque[str]) -> None:
        """``ident`` is finished (whatever its status): dependents with nothing else to wait for are ready."""
        for dependent in dependents.get(ident, ()):
            unfinished[dependent] -= 1
            if unfinished[dependent] == 0:
                ready.append(dependent)

    # --- one resource ----------------------------------------------------

    def _one(self, resource: Resource, deps: set[str]) -> _Settling | None:
        rp = self.decisions[resource.ident]
        blocked = [d for d in sorted(deps) if d in self.decisions and self.decisions[d].status in ("failed", "conflict", "blocked")]
        if self.execute and self.engine.stopping.is_set():
            rp.status, rp.message = "blocked", "not applied: lensops is shutting down"
            return None
        if self.execute and self.may_write is not None and not self.may_write():
            rp.status, rp.message = "blocked", "not applied: this replica's lease on the environment has ended"
            return None
        if self.execute and blocked:
            rp.status, rp.message = "blocked", f"dependency not ready: {', '.join(blocked)}"
            log.error("resource_failed", environment=self.env.name, kind=resource.kind, name=resource.name, status=rp.status, error=rp.message)
            return None
        return self._guarded(resource, rp, lambda: self._decide_and_apply(resource, rp))

    def _settle(self, settling: _Settling) -> _Settling | None:
        rp = self.decisions[settling.resource.ident]

        def check() -> _Settling | None:
            live = settling.reconciler.settle(settling.desired, settling.live)
            if live is not None:
                self._finish(settling.resource, rp, live, settling.state, settling.desired)
                return None
            if time.monotonic() > settling.deadline:
                raise PermanentError(f"still in progress after {settling.reconciler.settle_timeout:.0f}s")
            return settling

        return self._guarded(settling.resource, rp, check)

    def _guarded(self, resource: Resource, rp: ResourcePlan, step: Any) -> _Settling | None:
        """Run one step for a resource; any error marks that resource failed and is logged."""
        result: _Settling | None = None
        try:
            result = step()
        except LensopsError as exc:
            rp.status, rp.message = "failed", str(exc)
            self._remember_permanent(resource, exc)
        except Exception as exc:  # noqa: BLE001 - every AWS error is mapped and reported per resource
            error = classify(exc)
            rp.status, rp.message = "failed", str(error)
            self._remember_permanent(resource, error)
        if rp.status in ("failed", "conflict", "blocked"):
            log.error("resource_failed", environment=self.env.name, kind=resource.kind, name=resource.name, status=rp.status, error=rp.message)
            if self.execute and rp.status == "failed":
                self._remember_failure(resource, rp)
            self._report(rp)
        return result

    def _report(self, rp: ResourcePlan) -> None:
        """Tell the caller (the CLI's progress display) about a resource that was acted on."""
        if self.on_resource is not None and self.execute:
            self.on_resource(rp)

    def _decide_and_apply(self, resource: Resource, rp: ResourcePlan) -> _Settling | None:
        """Decide what one resource needs and, when applying, do it."""
        reconciler = self.reconciler(resource.kind)
        if reconciler is None:
            rp.status, rp.message = "failed", f"kind {resource.kind} has no reconciler in this version"
            return None
        if resource.kind in self.failures:
            rp.status, rp.message = "failed", f"observe: {self.failures[resource.kind]}"
            return None
        live = self.observed.get(resource.kind, {}).get(resource.physical)
        decided = self._decide(resource, rp, reconciler, live)
        if decided is None:
            return None
        desired, state = decided
        if rp.status != "ok" or rp.action == "noop" or not self.execute:
            self._publish(resource, self._known_outputs(reconciler, resource, live))
            if self.execute and rp.status == "ok":
                recovered = resource.ident in self.intents
                self._remember(resource, live, state, desired, changed=rp.adopt or recovered)
                if recovered:
                    self._clear_intent(resource)
            return None
        return self._apply(resource, rp, reconciler, desired, state, live)

    def _decide(self, resource: Resource, rp: ResourcePlan, reconciler: Reconciler, live: Live | None) -> tuple[Desired, dict[str, Any]] | None:
        """Fill ``rp`` with the action, changes and drift; None when the resource cannot go on."""
        record = self.inventory.get(resource.ident)
        spec = resource.spec
        if resource.ident in self.referring:
            try:
                with self.lock:
                    spec = resolve_refs(resource.spec, self.outputs, strict=self.execute)
            except _Unresolved as exc:
                rp.status, rp.message = "blocked", str(exc)
                return None
        desired = Desired(resource.kind, resource.name, resource.physical, spec, self._tags(resource, reconciler, spec), resource.annotations)
        state = reconciler.desired_state(desired)
        ignore = resource.ignored_fields
        if live is None:
            rp.action = "create"
            rp.changes = [Change(k, None, v) for k, v in state.items() if k not in ignore and v not in (None, "", [], {})]
        else:
            intent = self.intents.get(resource.ident)
            owned = (
                (record is not None and record.physical == resource.physical)
                or (live.owner == resource.ident and live.owner_env == self.env.name)
                or (intent is not None and intent["physical"] == resource.physical)
            )
            if not owned and not resource.annotation_true(ANNOTATION_ADOPT):
                rp.status = "conflict"
                rp.message = (
                    f"{resource.physical} exists in AWS and is not managed by lensops; "
                    'annotate lensops.io/adopt: "true" to take it over'
                )
                self._publish(resource, live.attrs or {"arn": live.arn})
                return None
            rp.adopt = not owned
            view = reconciler.compare_view(live, state)
            rp.changes = diff(state, view, ignore)
            rp.action = "update" if rp.changes else "noop"
            # Fields another tool owns keep their live value even through APIs that
            # replace the whole resource (PutMetricAlarm, UpdateWebACL, ...).
            for key in ignore:
                if key in state and key in view:
                    state[key] = view[key]
            if intent is not None:
                rp.drift = []  # a change was interrupted before it was recorded: its result is not drift
            elif record is not None and record.physical == resource.physical:
                if record.spec_hash == self._hash(resource, state):
                    rp.drift = list(rp.changes)  # the recorded spec is this one: its drift is the change set
                elif record.spec is not None:
                    rp.drift = diff(record.spec, reconciler.compare_view(live, record.spec), ignore)
        if rp.action != "noop" and resource.annotation_true(ANNOTATION_SUSPEND):
            rp.status, rp.message = "suspended", "lensops.io/suspend: observed only"
        active = self.active.get(resource.ident)
        if active is not None and rp.action == "update" and spec_hash(active["final"]) == spec_hash(state):
            rp.status = "progressing"
            rp.message = f"rollout step {active['index'] + 1} of {len(active['steps']) + 1}"
        return desired, state

    def _apply(
        self, resource: Resource, rp: ResourcePlan, reconciler: Reconciler, desired: Desired, state: dict[str, Any], live: Live | None
    ) -> _Settling | None:
        """Create or update one resource (or start its rollout); a change AWS is still making is returned to settle."""
        digest = self._hash(resource, state)
        known = self.permanent.get(resource.ident)
        if known and not self.retry_failed and known["hash"] == digest and known["revision"] == self.env.revision:
            rp.status = "failed"
            rp.message = f"{known['message']} (not retried until the spec or the revision changes)"
            return None
        self.state_hash[resource.ident] = digest
        key = f"{self.env.name}/{resource.ident}"
        pending = self.engine.store.get_item(INTENT_NAMESPACE, key)
        self.engine.store.put_item(INTENT_NAMESPACE, key, {"physical": resource.physical, "hash": digest}, pending[1] if pending else None)
        if live is None:
            result = reconciler.create(desired, state)
        else:
            steps = reconciler.rollout_steps(desired, state, live)
            if steps:
                self._start_rollout(resource, rp, reconciler, desired, state, live, steps)
                return None
            result = reconciler.update(desired, state, live, rp.changes)
        settled = reconciler.settle(desired, result)
        if settled is None:
            log.info("resource_progressing", environment=self.env.name, kind=resource.kind, name=resource.name, action=rp.action)
            return _Settling(resource, reconciler, desired, state, result, time.monotonic() + reconciler.settle_timeout)
        self._finish(resource, rp, settled, state, desired)
        return None

    def _start_rollout(
        self, resource: Resource, rp: ResourcePlan, reconciler: Reconciler, desired: Desired, state: dict[str, Any], live: Live, steps: list[dict[str, Any]]
    ) -> None:
        """Apply the first step of a progressive delivery; the health gate drives the rest."""
        first = steps[0]
        result = reconciler.update(desired, first, live, diff(first, reconciler.compare_view(live, first)))
        rollout = {
            "ident": resource.ident,
            "kind": resource.kind,
            "name": resource.name,
            "physical": resource.physical,
            "steps": steps,
            "final": state,
            "index": 0,
            "interval": reconciler.rollout_interval(desired),
            "step_started_at": time.time(),
            "desired": desired_record(desired),
        }
        with self.lock:
            self.rollouts.append(rollout)
        log.info("rollout_started", environment=self.env.name, kind=resource.kind, name=resource.name, steps=len(steps) + 1)
        self._finish(resource, rp, result, state, desired)
        rp.status, rp.message = "progressing", f"rollout started: step 1 of {len(steps) + 1}"

    def _finish(self, resource: Resource, rp: ResourcePlan, result: Live, state: dict[str, Any], desired: Desired) -> None:
        """Count, log, publish and record a change that AWS has completed."""
        if resource.ident in self.permanent:
            self.engine.store.delete_item(FAILURE_NAMESPACE, f"{self.env.name}/{resource.ident}")
        metrics.APPLIED_CHANGES.labels(self.env.name, resource.kind, rp.action).inc()
        log.info("resource_applied", environment=self.env.name, kind=resource.kind, name=resource.name, action=rp.action, fields=[c.path for c in rp.changes][:20])
        self._publish(resource, result.attrs or {"arn": result.arn})
        self._remember(resource, result, state, desired, changed=True)
        self._clear_intent(resource)
        with self.lock:
            self.applied.append({"kind": resource.kind, "name": resource.name, "action": rp.action, "fields": [c.path for c in rp.changes]})
        self._report(rp)

    def _hash(self, resource: Resource, state: dict[str, Any]) -> str:
        """``spec_hash(state)``, computed once per resource and state of this pass."""
        known = self.hashes.get(resource.ident)
        if known is not None and known[0] is state:
            return known[1]
        digest = spec_hash(state)
        self.hashes[resource.ident] = (state, digest)
        return digest

    def _tags(self, resource: Resource, reconciler: Reconciler, spec: dict[str, Any]) -> dict[str, str]:
        if not reconciler.taggable:
            return {}
        return {
            **self.env.spec.tags,
            **(spec.get("tags") or {}),
            OWNER_ENV_TAG: self.env.name,
            OWNER_ID_TAG: resource.ident,
        }

    def _known_outputs(self, reconciler: Reconciler, resource: Resource, live: Live | None) -> dict[str, Any]:
        if live is not None:
            return live.attrs or {"arn": live.arn}
        arn = reconciler.arn(resource.physical)
        return {"arn": arn} if arn else {}

    def _publish(self, resource: Resource, attrs: dict[str, Any]) -> None:
        with self.lock:
            self.outputs[resource.ident] = attrs

    def _clear_intent(self, resource: Resource) -> None:
        self.engine.store.delete_item(INTENT_NAMESPACE, f"{self.env.name}/{resource.ident}")

    def _remember(self, resource: Resource, live: Live | None, state: dict[str, Any], desired: Desired, changed: bool) -> None:
        """Record the resource as applied and in sync (only when something changed)."""
        record = self.inventory.get(resource.ident)
        digest = self._hash(resource, state)
        revision = self.env.revision
        if (
            not changed
            and record is not None
            and record.spec_hash == digest
            and record.sync == "synced"
            and record.physical == resource.physical
            and record.annotations == resource.annotations
        ):
            return
        self.engine.store.put_resource(
            ResourceRecord(
                environment=self.env.name,
                kind=resource.kind,
                name=resource.name,
                physical=resource.physical,
                arn=(live.arn if live else "") or (record.arn if record else ""),
                spec=state,
                healthy_spec=record.healthy_spec if record else None,
                revision=revision,
                sync="synced",
                health="healthy",
                spec_hash=digest,
                annotations=dict(resource.annotations),
                desired=desired_record(desired, sorted(self.deps[resource.ident])),
                healthy_desired=record.healthy_desired if record else None,
            )
        )

    def _remember_permanent(self, resource: Resource, error: Exception) -> None:
        """Keep a permanent error against the spec that caused it (the daemon does not retry it)."""
        digest = self.state_hash.get(resource.ident)
        if not self.execute or digest is None or not isinstance(error, PermanentError):
            return
        key = f"{self.env.name}/{resource.ident}"
        value = {"hash": digest, "revision": self.env.revision, "message": str(error), "at": time.time()}
        found = self.engine.store.get_item(FAILURE_NAMESPACE, key)
        self.engine.store.put_item(FAILURE_NAMESPACE, key, value, found[1] if found else None)

    def _remember_failure(self, resource: Resource, rp: ResourcePlan) -> None:
        record = self.inventory.get(resource.ident)
        if record is None:
            return
        record.sync, record.health, record.message = "unknown", "degraded", rp.message
        self.engine.store.put_resource(record)

    # --- prune -----------------------------------------------------------

    def prune(self, allow_mass_prune: bool) -> None:
        """Delete what lensops owns and Git no longer has: only with sync.prune, never prune=false."""
        wanted = {(r.ident, r.physical) for r in self.env.resources}
        idents = {r.ident for r in self.env.resources}
        candidates = [rec for rec in self.inventory.values() if (rec.ident, rec.physical) not in wanted]
        if not candidates:
            return
        decisions: list[tuple[ResourcePlan, ResourceRecord, Live | None]] = []
        for rec in prune_order(candidates):
            rp = ResourcePlan(rec.kind, rec.name, rec.physical, action="delete")
            live = self.observed.get(rec.kind, {}).get(rec.physical)
            if rec.kind in self.failures:
                rp.status, rp.message = "failed", f"observe: {self.failures[rec.kind]}"
            elif live is None:
                rp.action, rp.message = "noop", "already gone from AWS"
            elif rec.annotations.get(ANNOTATION_PRUNE, "").lower() == "false":
                rp.status, rp.message = "retained", 'lensops.io/prune: "false"'
            elif not self.env.spec.sync.prune:
                rp.status, rp.message = "orphan", "not in Git; sync.prune is off"
            decisions.append((rp, rec, live))
        deletes = [d for d in decisions if d[0].pending]
        managed = len(self.inventory)
        too_many = len(deletes) > MASS_PRUNE_FRACTION * managed
        empties = not self.env.resources and managed > 0
        if deletes and (too_many or empties) and not allow_mass_prune:
            reason = "leaves the environment with no manifests" if empties else f"deletes {len(deletes)} of {managed} managed resources (more than 10 %)"
            self.plan.errors.append(f"mass-prune guard: this revision {reason}; set sync.allowMassPrune or pass --allow-mass-prune")
            for rp, _, _ in deletes:
                rp.status, rp.message = "blocked", "mass-prune guard"
        for rp, rec, live in decisions:
            self.plan.resources.append(rp)
            if not self.execute:
                continue
            if rp.action == "noop" and rec.ident not in idents:
                self.engine.store.delete_resource(rec.environment, rec.kind, rec.name)
            if not rp.pending or live is None:
                continue
            try:
                reconciler = self.reconciler(rec.kind)
                if reconciler is None:
                    raise PermanentError(f"kind {rec.kind} has no reconciler in this version")
                reconciler.delete(live)
            except Exception as exc:  # noqa: BLE001 - mapped and reported per resource
                rp.status, rp.message = "failed", str(classify(exc))
                log.error("prune_failed", environment=self.env.name, kind=rec.kind, name=rec.name, error=rp.message)
                continue
            if rec.ident not in idents:
                self.engine.store.delete_resource(rec.environment, rec.kind, rec.name)
            self.pruned.append(dataclasses.asdict(rec))
            metrics.APPLIED_CHANGES.labels(self.env.name, rec.kind, "delete").inc()
            log.info("resource_pruned", environment=self.env.name, kind=rec.kind, name=rec.name, physical=rec.physical)
            self._report(rp)
            self.applied.append({"kind": rec.kind, "name": rec.name, "action": "delete", "fields": []})
