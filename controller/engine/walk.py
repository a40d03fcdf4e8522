"""One pass's walk: observe, then decide and write each target in dependency order, then delete.

``Pass`` holds what one pass knows (targets, records, observations, decisions,
outputs for references) and drives the pure decisions of ``decide.py`` and
the writes of the one ``Writer`` along the dependency graph (``schedule.py``).
``passes.py`` builds a pass for each of the engine's entry points.
"""

from __future__ import annotations

import contextvars
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from controller import logs
from controller.engine.decide import (
    Decision,
    Unresolved,
    decide,
    decommission_guard,
    mass_prune_guard,
    prune_decisions,
    resolve_refs,
    retain_unproven,
)
from controller.engine.journal import Journal
from controller.engine.schedule import Scheduler
from controller.engine.targets import Target
from controller.engine.write import Settling, Writer
from controller.diff import diff
from controller.errors import LensopsError, PermanentError, RetryableError, classify
from controller.manifests.graph import find_refs
from controller.manifests.model import EnvironmentDesired
from controller.manifests.types import NAME_RE
from controller.plan import Action, Plan, ResourcePlan, Status
from controller.state import ResourceRecord, StateStore
from controller.kinds import OWNER_ENV_TAG, OWNER_ID_TAG, Context, Desired, Leftover, Live, Reconciler, Registry

log = logs.get("lensops.engine")


class Pass:
    """The state of one pass: targets, observations, decisions, outputs for references."""

    def __init__(
        self,
        store: StateStore,
        registry: Registry,
        ctx: Context,
        env: EnvironmentDesired,
        targets: list[Target],
        inventory: dict[str, ResourceRecord],
        journal: Journal,
        plan: Plan,
        *,
        execute: bool,
        concurrency: int,
        stopping: threading.Event,
        active: dict[str, dict[str, Any]],
        on_resource: Callable[[ResourcePlan], None] | None,
        may_write: Callable[[], bool] | None,
    ):
        self.store = store
        self.registry = registry
        self._reconcilers: dict[str, Reconciler] = {}
        self._reconcilers_lock = threading.Lock()
        self.concurrency = concurrency
        self.stopping = stopping
        """Set on shutdown: the pass stops before its next write (a safe point)."""
        self.ctx = ctx
        self.env = env
        self.targets = targets
        self.inventory = inventory
        self.journal = journal
        self.plan = plan
        self.execute = execute
        self.active = active
        """Progressive deliveries the health gate is driving, by Kind/name."""
        self.on_resource = on_resource
        self.may_write = may_write
        """The daemon's lease check: False once this replica may no longer write."""
        self.writer: Writer
        self.started = time.monotonic()
        self.observed: dict[str, dict[str, Live]] = {}
        self.failures: dict[str, str] = {}
        self.observe_retry: dict[str, float] = {}
        """Kind -> the delay of its retryable observe failure."""
        self.unread: dict[tuple[str, str], LensopsError] = {}
        """(kind, physical) -> why observe could not read that one resource (the others of its kind were read)."""
        self.leftovers: dict[str, list[Leftover]] = {}
        """Kind -> what its observe found tagged as this environment's that lensops may never have recorded."""
        self.notes: dict[tuple[str, str], str] = {}
        """(kind, physical) -> what a prune candidate that has no record is (a creation that failed)."""
        self.outputs: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.decisions: dict[str, ResourcePlan] = {}
        self.deps: dict[str, set[str]] = {}
        """Kind/name -> what it waits for (dependsOn and reference targets), filled by ``walk``."""
        self.referring: set[str] = set()
        """Resources whose spec holds a ``ref:``: only theirs are resolved against the outputs."""
        self.env_unknown = False
        """A plan whose state store has no record of the environment: ownership that only the store
        could show is not verified (``decide``), rather than a conflict."""

    def reconciler(self, kind: str) -> Reconciler | None:
        """The pass's one reconciler of ``kind`` (it may keep what it learns for the pass), or None."""
        with self._reconcilers_lock:
            if kind not in self._reconcilers:
                cls = self.registry.get(kind)
                if cls is None:
                    return None
                self._reconcilers[kind] = cls(self.ctx)
            return self._reconcilers[kind]

    # --- observe ---------------------------------------------------------

    def observe(self, records: list[ResourceRecord]) -> None:
        """Read the targets and ``records`` (what may be deleted), every kind once, kinds in
        parallel; a failing kind fails only its resources."""
        wanted: dict[str, list[str]] = {}
        for target in self.targets:
            wanted.setdefault(target.kind, []).append(target.physical)
        for rec in records:
            wanted.setdefault(rec.kind, []).append(rec.physical)
        kinds = [k for k in wanted if k in self.registry]

        def read(kind: str) -> tuple[str, dict[str, Live]]:
            reconciler = self.reconciler(kind)
            assert reconciler is not None
            return kind, reconciler.observe(sorted(set(wanted[kind])))

        with ThreadPoolExecutor(max_workers=min(self.concurrency, max(1, len(kinds)))) as pool:
            futures = {pool.submit(contextvars.copy_context().run, read, kind): kind for kind in kinds}
            for future, kind in futures.items():
                try:
                    self.observed[kind] = future.result()[1]
                    self._observed_more(kind)
                except Exception as exc:  # mapped onto the taxonomy and reported
                    error = classify(exc)
                    self.failures[kind] = str(error)
                    if isinstance(error, RetryableError):
                        self.observe_retry[kind] = error.delay
                    log.warning(
                        "observe_failed", environment=self.env.name, revision=self.writer.history.revision, kind=kind, error=str(error), retryable=not isinstance(error, PermanentError)
                    )

    def _observed_more(self, kind: str) -> None:
        """What the kind's observe could not read, one resource at a time, and the leftovers it found."""
        reconciler = self.reconciler(kind)
        assert reconciler is not None
        for physical, exc in reconciler.unread().items():
            error = classify(exc)
            self.unread[(kind, physical)] = error
            log.warning("observe_failed", environment=self.env.name, kind=kind, physical=physical, error=str(error))
        self.leftovers[kind] = reconciler.leftovers()

    def unrecorded(self) -> list[ResourceRecord]:
        """What an unfinished write names (its intent) that no record and no target has: a creation
        that failed, or was cut short, before it was recorded. Observed with the records, so that
        its kind is read even when nothing else of the kind is, and its ``leftovers`` are seen."""
        idents = {t.ident for t in self.targets}
        found: list[ResourceRecord] = []
        for ident, intent in sorted(self.journal.intents().items()):
            kind, _, name = ident.partition("/")
            physical = str(intent.get("physical") or "")
            if physical and ident not in idents and ident not in self.inventory and kind in self.registry:
                found.append(ResourceRecord(self.env.name, kind, name, physical))
        return found

    def abandoned(self, wanted: set[tuple[str, str]]) -> list[ResourceRecord]:
        """The observed leftovers that no target wants and no record names, as prune candidates:
        tagged as this environment's, they are its orphans (their observed state is what a delete is given)."""
        taken = {(t.kind, t.physical) for t in self.targets} | {(r.kind, r.physical) for r in self.inventory.values()}
        found: list[ResourceRecord] = []
        for kind, leftovers in sorted(self.leftovers.items()):
            for leftover in leftovers:
                live = leftover.live
                ident = live.owner or ""
                owner_kind, _, name = ident.partition("/")
                mine = owner_kind == kind and NAME_RE.match(name) and live.owner_env == self.env.name
                if not mine or (ident, live.physical) in wanted or (kind, live.physical) in taken:
                    continue
                self.observed.setdefault(kind, {}).setdefault(live.physical, live)
                self.notes[(kind, live.physical)] = f"{leftover.why}, never recorded"
                taken.add((kind, live.physical))
                found.append(ResourceRecord(self.env.name, kind, name, live.physical, arn=live.arn))
        return found

    # --- ordering --------------------------------------------------------

    def walk(self, rollouts: bool) -> None:
        """Decide (and write) every target in dependency order, independent ones concurrently."""
        for target in self.targets:
            self.decisions[target.ident] = ResourcePlan(target.kind, target.name, target.physical)
            # What a resource waits for: its dependsOn and the targets of its references.
            refs = {ref for _, ref, _ in find_refs(target.spec)}
            if refs:
                self.referring.add(target.ident)
            self.deps[target.ident] = (set(target.depends_on) | refs) - {target.ident}
        by_ident = {t.ident: t for t in self.targets}
        if not self.execute:
            for target in self.targets:
                self._one(target, rollouts)
        else:
            scheduler: Scheduler[Settling] = Scheduler(self.concurrency, self.stopping)
            scheduler.run(
                [t.ident for t in self.targets],
                self.deps,
                start=lambda ident: self._one(by_ident[ident], rollouts),
                recheck=self._settle,
                owner=lambda settling: settling.target.ident,
                abandon=self._abandon,
            )
        self.plan.resources.extend(self.decisions[t.ident] for t in self.targets)

    # --- one resource ----------------------------------------------------

    def _one(self, target: Target, rollouts: bool) -> Settling | None:
        rp = self.decisions[target.ident]
        deps = self.deps[target.ident]
        blocked = [d for d in sorted(deps) if d in self.decisions and self.decisions[d].failing]
        if self.execute and (why := self._cannot_write()):
            rp.status, rp.message = Status.BLOCKED, why
            return None
        if self.execute and blocked:
            rp.status, rp.message = Status.BLOCKED, f"dependency not ready: {', '.join(blocked)}"
            log.error("resource_failed", environment=self.env.name, revision=self.writer.history.revision, kind=target.kind, name=target.name, status=rp.status, error=rp.message)
            return None
        return self._guarded(target, rp, lambda: self._decide_and_write(target, rp, rollouts))

    def _cannot_write(self) -> str:
        """Why this pass must stop writing now, or ''."""
        if self.stopping.is_set():
            return "not applied: lensops is shutting down"
        if self.may_write is not None and not self.may_write():
            return "not applied: this replica's lease on the environment has ended"
        return ""

    def _settle(self, settling: Settling) -> Settling | None:
        rp = self.decisions[settling.target.ident]
        deps = sorted(self.deps[settling.target.ident])
        return self._guarded(settling.target, rp, lambda: self.writer.settle(settling, rp, deps))

    def _abandon(self, settling: Settling) -> None:
        rp = self.decisions[settling.target.ident]
        rp.status, rp.message = Status.BLOCKED, "lensops stopped while AWS was still applying this change"

    def _guarded(self, target: Target, rp: ResourcePlan, step: Callable[[], Settling | None]) -> Settling | None:
        """Run one step for a resource; any error marks that resource failed and is logged."""
        result: Settling | None = None
        error: Exception | None = None
        try:
            result = step()
        except Exception as exc:  # every AWS error is mapped and reported per resource
            error = classify(exc)
            rp.status, rp.message = Status.FAILED, str(error)
            if isinstance(error, RetryableError):
                rp.retry_after = error.delay
        if rp.failing:
            log.error("resource_failed", environment=self.env.name, revision=self.writer.history.revision, kind=target.kind, name=target.name, status=rp.status, error=rp.message)
            if self.execute and rp.status == Status.FAILED:
                self.writer.failed(target, error, rp.message)
            self.report(rp)
        return result

    @staticmethod
    def _view(reconciler: Reconciler, desired: Desired, live: Live, state: dict[str, Any], applied: dict[str, Any] | None) -> dict[str, Any]:
        """The live state as the reconciler compares it with ``state``, previewed with AWS where they differ."""
        view = reconciler.compare_view(live, state, applied)
        if type(reconciler).preview is Reconciler.preview:
            return view  # nothing to preview: no second diff of every resource on the hot path
        return reconciler.preview(desired, live, state, view) if diff(state, view) else view

    def report(self, rp: ResourcePlan) -> None:
        """Tell the caller (the CLI's progress display) about a resource that was acted on."""
        if self.on_resource is not None and self.execute:
            self.on_resource(rp)

    def publish(self, target: Target, live: Live) -> None:
        with self.lock:
            self.outputs[target.ident] = live.attrs or {"arn": live.arn}

    def _decide_and_write(self, target: Target, rp: ResourcePlan, rollouts: bool) -> Settling | None:
        """Decide what one resource needs and, when applying, write it."""
        reconciler = self.reconciler(target.kind)
        if reconciler is None:
            rp.status, rp.message = Status.FAILED, f"kind {target.kind} has no reconciler in this version"
            return None
        if target.kind in self.failures:
            rp.status, rp.message = Status.FAILED, f"observe: {self.failures[target.kind]}"
            rp.retry_after = self.observe_retry.get(target.kind)
            return None
        if (unread := self.unread.get((target.kind, target.physical))) is not None:
            rp.status, rp.message = Status.FAILED, f"observe: {unread}"
            rp.retry_after = unread.delay if isinstance(unread, RetryableError) else None
            return None
        live = self.observed.get(target.kind, {}).get(target.physical)
        spec = target.spec
        if target.ident in self.referring:
            try:
                with self.lock:
                    spec = resolve_refs(target.spec, self.outputs, strict=self.execute)
            except Unresolved as exc:
                rp.status, rp.message = Status.BLOCKED, str(exc)
                return None
        desired, state = self._desired(target, reconciler, spec)
        record = self.inventory.get(target.ident)
        applied = record.spec if record is not None and record.physical == target.physical else None
        decision = decide(
            target, state, live, lambda wanted: self._view(reconciler, desired, live, wanted, applied),  # type: ignore[arg-type]
            environment=self.env.name, record=record,
            intent=self.journal.intent(target.ident), rollout=self.active.get(target.ident), shown=reconciler.creation_view,
            env_unknown=self.env_unknown,
        )
        self._copy_decision(rp, decision.plan)
        decision.plan = rp
        deps = sorted(self.deps[target.ident])
        if rp.status != Status.OK or rp.action == Action.NOOP or not self.execute:
            if live is not None:
                self.publish(target, live)
            else:
                self._publish_known(target, reconciler)
            if self.execute and rp.status == Status.OK:
                self._unchanged(target, rp, reconciler, desired, decision, live, deps)
            return None
        return self.writer.write(target, decision, reconciler, desired, live, deps, rollouts)

    def _desired(self, target: Target, reconciler: Reconciler, spec: dict[str, Any]) -> tuple[Desired, dict[str, Any]]:
        """The resource as the manifests want it (``spec`` resolved), and its normalised desired state."""
        tags = target.tags if target.tags is not None else self._tags(target, reconciler, spec)
        desired = Desired(target.kind, target.name, target.physical, spec, tags, target.annotations)
        if self.execute:  # what the state store keeps: a plan records nothing
            desired.stored = reconciler.stored_spec(desired)
        return desired, target.state if target.state is not None else reconciler.desired_state(desired)

    def expected(self, prune: bool) -> list[tuple[str, Action]]:
        """(kind, action) of each write this pass will probably make, before it makes any: for an
        estimate of its time at the API rates (``controller/forecast.py``), never for a write.

        ``decide`` on this pass's observations, without previews (a Stack's change set), with
        references resolved from what is observed; with ``prune``, a delete for each record no
        target wants. Called after ``observe``."""
        outputs: dict[str, dict[str, Any]] = {}
        for target in self.targets:
            if (seen := self.observed.get(target.kind, {}).get(target.physical)) is not None:
                outputs[target.ident] = seen.attrs or {"arn": seen.arn}
        found: list[tuple[str, Action]] = []
        for target in self.targets:
            try:
                action = self._expected(target, outputs)
            except Exception:  # an estimate: what cannot be decided now is decided, and reported, by the walk
                continue
            if action is not None:
                found.append((target.kind, action))
        if prune:
            wanted = {(t.ident, t.physical) for t in self.targets}
            found += [(rec.kind, Action.DELETE) for rec in self.inventory.values() if (rec.ident, rec.physical) not in wanted]
        return found

    def _expected(self, target: Target, outputs: dict[str, dict[str, Any]]) -> Action | None:
        """The write ``decide`` makes of ``target`` from the observations alone (no preview), or None."""
        reconciler = self.reconciler(target.kind)
        if reconciler is None or target.kind in self.failures:
            return None
        live = self.observed.get(target.kind, {}).get(target.physical)
        record = self.inventory.get(target.ident)
        applied = record.spec if record is not None and record.physical == target.physical else None
        spec = resolve_refs(target.spec, outputs, strict=False) if find_refs(target.spec) else target.spec
        _, state = self._desired(target, reconciler, spec)
        decision = decide(
            target, state, live, lambda wanted: reconciler.compare_view(live, wanted, applied),  # type: ignore[arg-type]
            environment=self.env.name, record=record, intent=self.journal.intent(target.ident),
            rollout=self.active.get(target.ident), shown=reconciler.creation_view,
        )
        ok = decision.plan.status == Status.OK and decision.plan.action != Action.NOOP
        return decision.plan.action if ok else None

    def _unchanged(
        self, target: Target, rp: ResourcePlan, reconciler: Reconciler, desired: Desired, decision: Decision, live: Live | None, deps: list[str]
    ) -> None:
        """A resource that needed no write: recorded when adopted or recovered, resolved in a rollback."""
        recovered = self.journal.intent(target.ident) is not None
        if rp.adopt and live is not None:
            self.writer.adopted(target, reconciler, desired, decision.state, live, deps)
        self.writer.settled(target, live, decision.state, desired, deps, changed=rp.adopt or recovered, digest=decision.digest)
        if recovered:
            self.journal.done(target.ident)

    @staticmethod
    def _copy_decision(rp: ResourcePlan, decided: ResourcePlan) -> None:
        """Copy a decision into the plan entry the pass reports (the scheduler holds that one)."""
        rp.action, rp.changes, rp.status, rp.message = decided.action, decided.changes, decided.status, decided.message
        rp.drift, rp.adopt = decided.drift, decided.adopt

    def _publish_known(self, target: Target, reconciler: Reconciler) -> None:
        arn = reconciler.arn(target.physical)
        with self.lock:
            self.outputs[target.ident] = {"arn": arn} if arn else {}

    def _tags(self, target: Target, reconciler: Reconciler, spec: dict[str, Any]) -> dict[str, str]:
        if not reconciler.taggable:
            return {}
        return {
            **self.env.spec.tags,
            **(spec.get("tags") or {}),
            OWNER_ENV_TAG: self.env.name,
            OWNER_ID_TAG: target.ident,
        }

    # --- delete ----------------------------------------------------------

    def prune(
        self,
        candidates: list[ResourceRecord],
        *,
        enabled: bool,
        guard: bool,
        unproven: frozenset[tuple[str, str]] = frozenset(),
        decommission: bool = False,
    ) -> None:
        """Delete the records' resources (dependents first): what Git no longer has, or in a
        rollback what lensops created since the healthy point. Only ever what lensops owns:
        ``unproven`` (Kind/name, physical) were created by lensops but never recorded, and
        are deleted only when their ownership tags say this environment made them. In a
        ``decommission`` (the environment left Git), every record is checked so against the
        tags of its kind, and any delete at all needs the guard lifted."""
        if not candidates:
            return
        idents = {t.ident for t in self.targets}
        unread = {key: str(error) for key, error in self.unread.items()}
        decisions = prune_decisions(candidates, self.observed, self.failures, prune=enabled, unread=unread, notes=self.notes)
        if decommission:
            retain_unproven(decisions, self.env.name)
        deletes = [d for d in decisions if d[0].pending]
        # What lensops owns: its records, and the candidates it owns by their tags only (never recorded).
        managed = len(self.inventory) + sum(1 for c in candidates if (c.kind, c.physical) in self.notes)
        if not guard:
            refusal = ""
        elif decommission:
            refusal = decommission_guard(len(deletes), managed, self.env.name)
        else:
            refusal = mass_prune_guard(len(deletes), managed, bool(self.targets))
        if refusal:
            self.plan.errors.append(f"mass-prune guard: {refusal}")
            for rp, _, _ in deletes:
                rp.status, rp.message = Status.BLOCKED, "mass-prune guard"
        for rp, rec, live in decisions:
            self.plan.resources.append(rp)
            if not self.execute:
                continue
            if rp.action == Action.NOOP and rec.ident not in idents:
                self.writer.gone(rec, keep_record=False)
            if not rp.pending or live is None:
                continue
            if (rec.ident, rec.physical) in unproven and (live.owner, live.owner_env) != (rec.ident, self.env.name):
                rp.status = Status.FAILED
                rp.message = (
                    f"{rec.physical} was being created by lensops since the healthy point, but its creation was "
                    "never recorded and its tags do not show lensops made it: delete it by hand if lensops did"
                )
                continue
            if why := self._cannot_write():
                rp.status, rp.message = Status.BLOCKED, why
                continue
            try:
                reconciler = self.reconciler(rec.kind)
                if reconciler is None:
                    raise PermanentError(f"kind {rec.kind} has no reconciler in this version")
                self.writer.delete(rec, rp, reconciler, live, keep_record=rec.ident in idents)
            except Exception as exc:  # mapped and reported per resource
                rp.status, rp.message = Status.FAILED, str(classify(exc))
                log.error("prune_failed", environment=self.env.name, revision=self.writer.history.revision, kind=rec.kind, name=rec.name, error=rp.message)
