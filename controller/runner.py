"""One pass over the environments of a source: load, guard the account, plan or apply.

Shared by ``lensops plan``/``apply`` and the daemon: it checks out the
source, loads the tree (an invalid environment is refused whole, the others
go on), asks STS which account each environment's credentials act in
(refusing a mismatch with ``spec.account``), asks the pass policy
(``policy.py``) whether to execute, and runs the engine for each
environment; ``apply`` then bakes in the foreground and drives the
environment's RunbookRuns to their end (``runbooks/executor.py``).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from controller import catalog, health, logs, metrics, pacing, policy
from controller.aws import ClientFactory, check_account
from controller.engine import DECOMMISSIONED, TARGET_KEY, Engine, Outcome
from controller.errors import LensopsError, Problem, UsageError, classify
from controller.forecast import Forecast
from controller.kinds import Registry
from controller.manifests.loader import load_tree
from controller.manifests.model import EnvironmentDesired, EnvironmentSpec
from controller.plan import ResourcePlan
from controller.render import resource_done
from controller.settings import Settings
from controller.source import Source
from controller.state import Missing, StateStore, open_store
from runbooks import CATALOGUE as RUNBOOKS
from runbooks.executor import Progress as RunbookProgress
from runbooks.executor import drive as drive_runbooks

log = logs.get("lensops.runner")


@dataclass
class Report:
    """What a pass over several environments found and did."""

    revision: str = ""
    outcomes: list[Outcome] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    held: dict[str, str] = field(default_factory=dict)
    runbooks: list[RunbookProgress] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        failed_now = any(p.state == "failed" and not p.already_finished for p in self.runbooks)
        return not self.problems and not self.errors and all(o.ok for o in self.outcomes) and not failed_now

    @property
    def has_changes(self) -> bool:
        return any(o.plan.has_changes for o in self.outcomes)

    def summary(self) -> str:
        parts = []
        for o in self.outcomes:
            n = len(o.applied)
            parts.append(f"{o.plan.environment}: {o.result}, {n} change{'s' if n != 1 else ''} applied in {o.duration:.1f}s")
        for env, reason in self.held.items():
            parts.append(f"{env}: held, {reason}")
        for p in self.runbooks:
            state = f"already {p.state}, not run again" if p.already_finished else p.state
            parts.append(f"{p.environment}: runbook {p.runbook} {p.name} {state}" + (f" ({p.message})" if p.message else ""))
        return "Apply: " + ("; ".join(parts) if parts else "nothing to do")

    def as_dict(self) -> dict[str, Any]:
        return {
            "formatVersion": 1,
            "revision": self.revision,
            "ok": self.ok,
            "changes_pending": self.has_changes,
            "problems": [{"path": p.path, "line": p.line, "resource": p.ident, "message": p.message} for p in self.problems],
            "errors": list(self.errors),
            "held": dict(self.held),
            "environments": [{**o.plan.as_dict(), "result": o.result, "applied": o.applied, "duration_seconds": round(o.duration, 3)} for o in self.outcomes],
            "runbooks": [
                {"environment": p.environment, "name": p.name, "runbook": p.runbook, "state": p.state, "step": p.step,
                 "message": p.message, "alreadyFinished": p.already_finished, "outputs": p.outputs}
                for p in self.runbooks
            ],
        }


def _progress(progress: Callable[[str], None], environment: str, forecast: Forecast | None, rp: ResourcePlan) -> None:
    progress(f"{environment}: {resource_done(rp)}")
    if forecast is not None:
        forecast.finished(rp)


class Runner:
    """Holds the factory, the store and the source for passes over environments."""

    def __init__(self, settings: Settings, source: Source, store: StateStore, factory: ClientFactory, registry: Registry):
        self.settings = settings
        self.registry = registry
        self.source = source
        self.store = store
        self.factory = factory
        self.engine = Engine(factory, store, registry, settings.concurrency)
        self._accounts: dict[tuple[str, str, str], str] = {}

    @classmethod
    def from_settings(cls, settings: Settings, repo: str | None = None, missing: Missing = "create") -> "Runner":
        """``missing``: what to do when the state store does not exist (``plan``: an empty one, made nothing of).
        The process's AWS requests are paced to ``LENSOPS_API_RATES`` from here on."""
        pacer = pacing.configure(settings.api_rates)
        source = Source(repo or settings.repo_url, settings.branch, settings.path, settings.cache_dir)
        factory = ClientFactory(settings.concurrency, pacer=pacer)
        return cls(settings, source, open_store(settings.state_url, missing=missing), factory, catalog.registry())

    def close(self) -> None:
        self.store.close()

    def account_for(self, name: str, spec: EnvironmentSpec) -> str:
        """The account the environment's credentials act in; refuses a mismatch with spec.account."""
        key = (spec.region, spec.assumeRoleArn or "", spec.account or "")
        if key not in self._accounts:
            self._accounts[key] = check_account(self.factory, spec.region, spec.assumeRoleArn or "", spec.account or "")
        return self._accounts[key]

    def run(
        self,
        envs: list[str] | None,
        *,
        execute: bool,
        allow_mass_prune: bool = False,
        force_window: bool = False,
        progress: Callable[[str], None] = lambda line: None,
    ) -> Report:
        checkout = self.source.checkout()
        report = Report(revision=checkout.revision)
        guard_errors: dict[str, str] = {}

        def account(name: str, spec: EnvironmentSpec) -> str | None:
            try:
                return self.account_for(name, spec)
            except LensopsError as exc:
                guard_errors[name] = str(exc)
                return spec.account

        result = load_tree(checkout.root, self.registry, envs, account=account)
        report.problems = result.all_problems
        for name in sorted(result.problems):
            if name and execute:
                metrics.count_result(name, "invalid")
        for name, env in sorted(result.environments.items()):
            env.revision = checkout.revision
            if name in guard_errors:
                report.errors.append(f"environment {name}: {guard_errors[name]}")
                continue
            acct = self.account_for(name, env.spec)
            decided = self._policy(env, execute, force_window)
            if decided.execute and decided.new and self._open_bake_failed(env, acct, progress):
                decided = self._policy(env, execute, force_window)
            if decided.refused:
                report.errors.append(decided.why if decided.holder else f"environment {name}: {decided.why}")
            elif decided.why:
                report.held[name] = decided.why
            # An apply that will take long at the API rates says so, and how far along it is.
            forecast = Forecast(name, acct, env.spec.region, self.registry, self.factory.pacer, progress) if self.factory.pacer.enabled else None
            outcome = self.engine.reconcile(
                env, acct, execute=decided.execute, record=decided.execute, allow_mass_prune=allow_mass_prune, trigger=decided.trigger,
                on_resource=functools.partial(_progress, progress, name, forecast), on_forecast=forecast.start if forecast else None,
            )
            report.outcomes.append(outcome)
            if decided.execute:
                gate = health.after_pass(self.engine, env, outcome, new=decided.new)
                if gate is not None and outcome.ok:
                    self._bake(env, acct, outcome, report, progress)
            if execute:
                report.runbooks.extend(self._runbooks(env, acct, progress))
        return report

    def decommission(
        self, name: str, *, execute: bool, allow_mass_prune: bool = False, progress: Callable[[str], None] = lambda line: None
    ) -> Report:
        """``lensops decommission``: delete what lensops owns in environment ``name``, removed from Git.

        Refused (``UsageError``) while the source still has the environment, while the state
        store has no record of it, while another process holds its lease, and when the account
        guard fails for the account it was last applied in."""
        checkout = self.source.checkout()
        env = self._removed_environment(name, checkout.root, checkout.revision)
        if env is None:
            return Report(revision=checkout.revision, held={name: "decommissioned already: lensops owns nothing there any more"})
        account = self.account_for(name, env.spec)
        outcome = self.engine.decommission(
            env, account, execute=execute, allow_mass_prune=allow_mass_prune, on_resource=functools.partial(_progress, progress, name, None)
        )
        return Report(revision=checkout.revision, outcomes=[outcome])

    def _removed_environment(self, name: str, root: Path, revision: str) -> EnvironmentDesired | None:
        """Environment ``name`` as the state store last knew it (where it was, no resources), once
        the checkout at ``root`` shows it removed from Git; None when it is decommissioned already."""
        where = self.source.repo
        if not (root / "environments").is_dir():
            raise UsageError(f"{where} has no environments/ folder: give --repo the repository environment {name} was removed from")
        if (root / "environments" / name).exists():
            raise UsageError(
                f"environment {name} is still in {where} (environments/{name}/): decommission is for environments "
                "removed from Git; remove its folder and commit first"
            )
        record = self.store.environment(name)
        recorded = self.store.resources(name)
        if record is None and not recorded:
            raise UsageError(f"the state store has no record of environment {name}: lensops knows of nothing to delete there")
        if record is not None and record.status == DECOMMISSIONED and not recorded:
            return None
        holder = policy.live_lease_holder(self.store, name)
        if holder:
            raise UsageError(f"the daemon {holder[0]} holds environment {name}'s lease: decommission once it has seen the removal (status 'removed')")
        target = (record.data.get(TARGET_KEY) if record else None) or self._last_target(name, record.applied_revision if record else "")
        spec = EnvironmentSpec(region=target["region"], account=target.get("account") or None, assumeRoleArn=target.get("roleArn") or None)
        return EnvironmentDesired(name, spec, f"environments/{name}", [], revision=revision)

    def _last_target(self, name: str, revision: str) -> dict[str, str]:
        """Where an environment recorded before its target was (an older lensops): read from the
        Environment manifest of its last applied revision, when the source is Git and has it."""
        try:
            if not revision:
                raise UsageError("it has no applied revision")
            old = load_tree(self.source.export(revision).root, self.registry, [name])
            env = old.environments.get(name)
            if env is None:
                raise UsageError(f"revision {revision[:12]} has no valid environment {name}")
        except LensopsError as exc:
            raise UsageError(
                f"the state store does not say which region and account environment {name} was in, "
                f"and its last applied revision cannot tell: {exc}"
            ) from None
        return {"region": env.spec.region, "account": env.spec.account or "", "roleArn": env.spec.assumeRoleArn or ""}

    def _policy(self, env: EnvironmentDesired, execute: bool, force_window: bool) -> policy.PassPolicy:
        record = self.store.environment(env.name)
        if not execute:
            return policy.decide(env, record, "plan")
        return policy.decide(env, record, "apply", force_window=force_window, lease_holder=policy.live_lease_holder(self.store, env.name))

    def _runbooks(self, env: Any, account: str, progress: Callable[[str], None]) -> list[RunbookProgress]:
        """Drive the environment's RunbookRuns in the foreground until each finishes (windows do not hold them).

        Waiting is re-checking in a loop on this thread, bounded by the longest run timeout."""
        runs = env.runs
        if not runs:
            return []
        ctx = self.engine.context(env, account)
        deadline = time.time() + max(RUNBOOKS[r.spec["runbook"]].timeout for r in runs) + 60
        while True:
            found = drive_runbooks(self.store, env, ctx)
            due = [p.next_check for p in found if p.next_check is not None]
            if not due or time.time() > deadline:
                return found
            for p in found:
                if p.next_check is not None:
                    progress(f"{env.name}: runbook {p.runbook} {p.name}: {p.step}: {p.message}")
            time.sleep(min(60.0, max(0.0, min(due) - time.time())))

    def _open_bake_failed(self, env: EnvironmentDesired, account: str, progress: Callable[[str], None]) -> bool:
        """A bake left open (an apply stopped while baking) is checked once before newer changes: True when it failed."""
        gate = health.pending(self.store, env.name)
        if gate is None:
            return False
        try:
            result = health.check(self.engine, env, account, gate, progress=progress)
        except Exception as exc:  # an unreadable alarm keeps the gate open, it never rolls back
            progress(f"{env.name}: the open bake of {gate.revision[:12]} could not be checked: {classify(exc)}")
            return False
        if result in ("baking", "healthy", "superseded"):
            return False
        record = self.store.environment(env.name)
        progress(f"{env.name}: the open bake of {gate.revision[:12]} failed before this apply: {record.message if record else result}")
        return True

    def _bake(self, env: EnvironmentDesired, account: str, outcome: Outcome, report: Report, progress: Callable[[str], None]) -> None:
        """Bake in the foreground until healthy, rolled back or failed."""
        gate = health.pending(self.store, env.name)
        if gate is None:
            return
        progress(f"{env.name}: baking {gate.until - time.time():.0f}s, watching {', '.join(gate.alarms) or 'the rollouts'}")
        while True:
            try:
                result = health.check(self.engine, env, account, gate, progress=progress)
            except Exception as exc:  # an unreadable alarm keeps the gate open, it never rolls back
                progress(f"{env.name}: health could not be checked: {classify(exc)}")
                if time.time() >= gate.until and not gate.rollouts:
                    outcome.result = "failed"
                    report.errors.append(f"environment {env.name}: health could not be checked at the end of the bake: {classify(exc)}")
                    return
                result = "baking"
            if result != "baking":
                break
            gate = health.pending(self.store, env.name) or gate  # its rollouts stepped, its time moved
            progress(f"{env.name}: baking, {max(0.0, gate.until - time.time()):.0f}s left, no alarm fired")
            time.sleep(min(gate.check_every, max(0.1, gate.until - time.time())))
        if result == "healthy":
            progress(f"{env.name}: healthy after the bake")
            return
        if result == "superseded":
            progress(f"{env.name}: the bake was replaced by a newer revision's")
            return
        record = self.store.environment(env.name)
        outcome.result = "rolled_back" if result == "rolled_back" else "failed"
        report.errors.append(f"environment {env.name}: {record.message if record else result}")
