"""The daemon (``lensops run``): watch the source, reconcile each environment, serve HTTP.

Scheduling is apscheduler's: a fetch job every ``LENSOPS_POLL_INTERVAL`` (or
at once on a webhook or, for a local folder, a watchfiles change), and one
reconcile job per environment every ``sync.interval`` (default
``LENSOPS_RESYNC_INTERVAL``). One reconcile at a time per environment,
environments in parallel. A new revision is applied; a resync of the same
revision reverts drift only with ``sync.selfHeal``, else reports it. An
invalid revision is refused per environment and the last valid one stays
live. SIGTERM and SIGINT stop new work, let the in-flight pass stop at a
safe point, and exit 0. An environment whose folder leaves Git is no longer
reconciled: its status says ``removed`` and its gauges' series go.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import threading
import time
import traceback
from typing import Any, Callable

from apscheduler.executors.pool import ThreadPoolExecutor as SchedulerPool
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler

from controller import health, logs, metrics, policy
from controller.engine import DECOMMISSIONED
from controller.errors import LensopsError, Problem
from controller.manifests.loader import load_tree
from controller.manifests.model import EnvironmentDesired, EnvironmentSpec
from controller.notify import notify
from controller.runner import Runner
from controller.server import Server
from controller.leases import Leases
from controller.settings import Settings
from controller.source import redact
from controller.state import EnvironmentRecord, LeaseLost, StateStore
from controller.status import status_document
from runbooks import CATALOGUE as RUNBOOKS
from runbooks.executor import drive as drive_runbooks

log = logs.get("lensops.daemon")

SHUTDOWN_SECONDS = 25.0
REMOVED = "removed"
"""The status of an environment whose folder left Git."""
RETIRED = (REMOVED, DECOMMISSIONED)
"""Statuses of an environment the daemon no longer runs (``lensops decommission`` ends a removed one)."""


class Daemon:
    """Owns the scheduler, the HTTP server and what each environment runs."""

    def __init__(self, settings: Settings, repo: str | None = None, envs: list[str] | None = None):
        self.settings = settings
        self.runner = Runner.from_settings(settings, repo)
        self.engine = self.runner.engine
        self.store = self.runner.store
        self.envs = envs
        self.stop_event = threading.Event()
        self.loaded: dict[str, EnvironmentDesired] = {}
        self.invalid: dict[str, list[Problem]] = {}
        self.tree_problems: list[Problem] = []
        self.fetched_revision = ""
        self.fetch_error = ""
        self.first_loaded = threading.Event()
        self.heartbeat = time.monotonic()
        self._dirty: dict[str, str] = {}
        self._refusals: dict[str, tuple[str, list[Problem]]] = {}
        """Refused revisions to record under their environment's lock, at its next pass."""
        self._held_envs: dict[str, EnvironmentDesired] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._state_lock = threading.Lock()
        self.scheduler = BackgroundScheduler(
            executors={"default": SchedulerPool(max_workers=8)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=dt.timezone.utc,
        )
        host, port = settings.http_host_port
        self.server = Server(host, port, self, settings.webhook_secret, api_token=settings.api_token)
        self.leases = Leases(self.store, float(settings.lease_ttl))
        self.clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)
        """Now, for sync windows (tests set it to open or close a window)."""

    # --- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        for result in metrics.FETCH_RESULTS:
            metrics.GIT_FETCH.labels(result)
        metrics.runbooks_known(RUNBOOKS)
        for record in self.store.environments():
            # What the state store knows is exported at once: dashboards and the
            # no-sync alert do not go blank across a restart.
            if (self.envs and record.environment not in self.envs) or record.status in RETIRED:
                continue
            metrics.environment_seen(record.environment)
            if record.applied_revision:
                metrics.set_applied_revision(record.environment, record.applied_revision)
            if record.last_sync:
                metrics.LAST_SYNC.labels(record.environment).set(record.last_sync)
        self.server.start()
        now = dt.datetime.now(dt.timezone.utc)
        self.scheduler.add_job(self._beat, "interval", seconds=5, id="heartbeat", next_run_time=now)
        self.scheduler.add_job(self._lease_job, "interval", seconds=self.leases.interval, id="leases", next_run_time=now)
        self.scheduler.add_job(self.fetch, "interval", seconds=self.settings.poll_interval, id="fetch", next_run_time=now, kwargs={"reason": "poll"})
        self.scheduler.start()
        if not self.runner.source.remote:
            threading.Thread(target=self._watch, name="lensops-watch", daemon=True).start()
        host, port = self.server.address
        log.info("daemon_started", repo=redact(self.runner.source.repo), branch=self.settings.branch, http=f"{host}:{port}", poll_s=self.settings.poll_interval, resync_s=self.settings.resync_interval)

    def stop(self) -> None:
        """Stop taking work, let running passes reach a safe point, then close."""
        log.info("daemon_stopping")
        self.stop_event.set()
        self.engine.stopping.set()
        done = threading.Thread(target=self.scheduler.shutdown, kwargs={"wait": True}, daemon=True)
        done.start()
        done.join(SHUTDOWN_SECONDS)
        self.server.stop()
        if done.is_alive():
            log.warning("daemon_stop_timeout", seconds=SHUTDOWN_SECONDS)
            os._exit(0)
        self.leases.release_all()
        self.runner.close()
        log.info("daemon_stopped")

    def _beat(self) -> None:
        self.heartbeat = time.monotonic()

    def _watch(self) -> None:
        import watchfiles

        root = self.runner.source.repo
        for _changes in watchfiles.watch(root, stop_event=self.stop_event, debounce=300, recursive=True, raise_interrupt=False):
            self.trigger_fetch("watch")

    # --- HTTP backend ----------------------------------------------------------

    def alive(self) -> bool:
        return self.scheduler.running and time.monotonic() - self.heartbeat < 60

    def ready(self) -> tuple[bool, str]:
        if not self.first_loaded.is_set():
            return False, self.fetch_error or "first revision not loaded yet"
        try:
            self.store.ping()
        except Exception as exc:  # readiness reports any store failure
            return False, f"state store: {exc}"
        return True, ""

    def status(self) -> dict[str, Any]:
        doc = status_document(self.store, self.envs)
        for name, problems in self.invalid.items():
            entry = doc["environments"].setdefault(name, {"status": "invalid", "resources": []})
            entry["invalid"] = [str(p) for p in problems]
        doc["source"] = {
            "repo": redact(self.runner.source.repo),
            "branch": self.settings.branch,
            "revision": self.fetched_revision,
            "error": self.fetch_error,
            "problems": [str(p) for p in self.tree_problems],
        }
        return doc

    def trigger_fetch(self, reason: str) -> None:
        if self.stop_event.is_set():
            return
        try:
            self.scheduler.modify_job("fetch", next_run_time=dt.datetime.now(dt.timezone.utc), kwargs={"reason": reason})
        except LookupError:
            pass

    # --- fetch -------------------------------------------------------------------

    def _account(self, name: str, spec: EnvironmentSpec) -> str | None:
        try:
            return self.runner.account_for(name, spec)
        except LensopsError as exc:
            log.error("account_guard_failed", environment=name, error=str(exc))
            return spec.account

    def fetch(self, reason: str = "poll") -> None:
        """Fetch the source; a new revision is loaded and its changed environments reconciled."""
        try:
            checkout = self.runner.source.checkout()
        except LensopsError as exc:
            self.fetch_error = str(exc)
            log.error("fetch_failed", reason=reason, error=str(exc))
            return
        self.fetch_error = ""
        if not self.runner.source.remote:
            metrics.set_source_revision(checkout.revision)
        if checkout.revision == self.fetched_revision:
            return
        log.info("revision_fetched", revision=checkout.revision, reason=reason)
        try:
            result = load_tree(checkout.root, self.runner.registry, self.envs, account=self._account)
        except Exception as exc:  # a loader bug: this revision waits (retried at the next fetch), the fetch job goes on
            metrics.GIT_FETCH.labels("load_failed").inc()
            self.fetch_error = f"revision {checkout.revision[:12]} could not be loaded: internal error {type(exc).__name__} (see the load_crashed event)"
            frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            where = f"{os.path.basename(frame.filename)}:{frame.lineno}" if frame else ""
            log.error("load_crashed", revision=checkout.revision, error=f"{type(exc).__name__}: {exc}"[:500], at=where)
            return
        self.tree_problems = result.problems.get("", [])
        for problem in self.tree_problems:
            log.error("manifest_invalid", problem=str(problem), revision=checkout.revision)
        changed: list[str] = []
        try:
            recorded = {r.environment for r in self.store.environments() if r.status not in RETIRED}
        except Exception as exc:  # the store is away: what it records is looked at again at the next revision
            log.warning("state_read_failed", error=f"{type(exc).__name__}: {exc}")
            recorded = set()
        with self._state_lock:
            for name, env in result.environments.items():
                env.revision = checkout.revision
                self.loaded[name] = env
                self.invalid.pop(name, None)
                changed.append(name)
            refused = {name: problems for name, problems in result.problems.items() if name}
            self.invalid.update(refused)
            self.fetched_revision = checkout.revision
            # A tree broken as a whole (no environments/ folder, a folder that cannot be an environment)
            # says nothing about which environments left: none is retired on its word.
            gone = [] if self.tree_problems else self._gone(set(result.environments) | set(refused), recorded)
        for name in gone:
            self.scheduler.add_job(self._retire, "date", args=[name, checkout.revision], id=f"retire:{name}", replace_existing=True)
        for name, problems in sorted(refused.items()):
            self._refuse(name, checkout.revision, problems)
        for name in sorted(changed):
            self._ensure_env(name)
            self.schedule(name, "revision")
        self.first_loaded.set()
        try:  # take the leases of newly loaded environments now, not at the next tick
            self.scheduler.modify_job("leases", next_run_time=dt.datetime.now(dt.timezone.utc))
        except LookupError:
            pass

    def _gone(self, present: set[str], recorded: set[str]) -> list[str]:
        """Environments known here or ``recorded`` in the state store that the new revision no longer
        has (the caller holds the state lock): taken out of what the daemon runs, at once."""
        known = recorded | set(self.loaded) | set(self.invalid)
        gone = sorted(n for n in known if n not in present and (not self.envs or n in self.envs))
        for name in gone:
            for held in (self.loaded, self.invalid, self._dirty, self._refusals, self._held_envs):
                held.pop(name, None)
        return gone

    def _retire(self, name: str, revision: str) -> None:
        """An environment gone from Git: once its running pass (if any) ends, no more passes, bakes or
        runbooks; its lease is given up, its status says ``removed`` and its gauges' series go (counters
        stay). What lensops created for it in AWS stays as it is."""
        lock = self._locks.get(name) or threading.Lock()
        with lock:
            with self._state_lock:
                if name in self.loaded or name in self.invalid:
                    return  # back in a newer revision meanwhile
            for job in ("reconcile", "retry", "bake", "runbook"):
                try:
                    self.scheduler.remove_job(f"{job}:{name}")
                except JobLookupError:
                    pass
            try:
                self.leases.release(name)
                record = self.store.environment(name)
                if record is not None and record.status != REMOVED:
                    record.status = REMOVED
                    record.message = f"removed from Git at revision {revision[:12]}: lensops no longer changes it, and leaves what it made in AWS"
                    self.store.put_environment(record)
            except Exception as exc:  # the store is away: the status row says so at the next revision
                log.error("environment_removal_failed", environment=name, error=f"{type(exc).__name__}: {exc}")
            metrics.forget_environment(name)
            log.warning("environment_removed", environment=name, revision=revision)

    def _refuse(self, name: str, revision: str, problems: list[Problem]) -> None:
        """An invalid revision of ``name``: counted and logged now; recorded by the replica that holds
        the environment's lease, under its lock and fence (the record is read and rewritten whole:
        never beside a pass or a bake check of it), at once or, when busy, by its next pass."""
        metrics.environment_seen(name)  # one never valid yet has its other results' series too, at 0
        metrics.count_result(name, "invalid")
        for problem in problems:
            log.error("manifest_invalid", environment=name, revision=revision, problem=str(problem))
        lock = self._locks.get(name)
        if lock is None:  # never loaded (valid) anywhere here: no pass, no bake, no lease of it
            self._record_refusal(name, revision, problems, self.store)
            return
        fenced = self._fenced(name)
        if fenced is None:
            return  # the replica that holds it records it
        if lock.acquire(blocking=False):
            try:
                self._record_refusal(name, revision, problems, fenced[0])
            finally:
                lock.release()
            return
        with self._state_lock:
            self._refusals[name] = (revision, problems)
            self._dirty.setdefault(name, "resync")
        self._run_soon(name)

    @staticmethod
    def _record_refusal(name: str, revision: str, problems: list[Problem], store: StateStore) -> None:
        record = store.environment(name) or EnvironmentRecord(name)
        record.status = "invalid"
        record.message = f"revision {revision[:12]} refused: {problems[0]}" + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else "")
        record.data = {**record.data, "invalid": {"revision": revision, "problems": [str(p) for p in problems[:100]]}}
        store.put_environment(record)

    def _ensure_env(self, name: str) -> None:
        env = self.loaded[name]
        interval = env.spec.interval_seconds(self.settings.resync_interval)
        job_id = f"reconcile:{name}"
        self._locks.setdefault(name, threading.Lock())
        metrics.LEADER.labels(name).set(1 if self.leases.holds(name) else 0)
        metrics.environment_seen(name)
        for resource in env.resources:
            metrics.DRIFT_DETECTED.labels(name, resource.kind)
            metrics.ROLLBACKS.labels(name, resource.kind)
        job = self.scheduler.get_job(job_id)
        if job is None:
            self.scheduler.add_job(self._reconcile_job, "interval", seconds=interval, id=job_id, args=[name])
        elif getattr(job.trigger, "interval", None) != dt.timedelta(seconds=interval):
            self.scheduler.reschedule_job(job_id, trigger="interval", seconds=interval)

    # --- leases ----------------------------------------------------------------

    def _lease_job(self) -> None:
        """Renew, take and give up environments; a gained one is reconciled (and its bake resumed) at once."""
        try:
            gained, lost = self.leases.tick(sorted(self.loaded))
        except LensopsError as exc:
            log.error("lease_check_failed", error=str(exc))
            return
        for name in lost:
            log.info("environment_handed_over", environment=name)
        for name in gained:
            if health.pending(self.store, name) is not None:
                log.info("bake_resumed", environment=name)
                self._schedule_bake(name, 0.0)
            self.schedule(name, "lease")

    # --- reconcile ------------------------------------------------------------

    def schedule(self, name: str, reason: str) -> None:
        """Reconcile an environment now (or right after its running pass)."""
        with self._state_lock:
            self._dirty[name] = reason
        self._run_soon(name)

    def _run_soon(self, name: str) -> None:
        try:
            self.scheduler.modify_job(f"reconcile:{name}", next_run_time=dt.datetime.now(dt.timezone.utc))
        except LookupError:
            pass

    def _reconcile_job(self, name: str) -> None:
        lock = self._locks[name]
        if not lock.acquire(blocking=False):
            if name in self._dirty:  # busy with a bake check: come back in a second
                when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1)
                self.scheduler.modify_job(f"reconcile:{name}", next_run_time=when)
            return
        try:
            reason = "resync"
            while not self.stop_event.is_set():
                with self._state_lock:
                    reason = self._dirty.pop(name, reason)
                try:
                    if self.leases.holds(name):
                        self.reconcile(name, reason)
                except LeaseLost:
                    self.leases.lost(name)
                except Exception as exc:  # a bug must not stop the environment's schedule
                    metrics.count_result(name, "failed")
                    log.exception("reconcile_crashed", environment=name, error=f"{type(exc).__name__}: {exc}")
                with self._state_lock:
                    if name not in self._dirty:
                        break
        finally:
            lock.release()

    def _fenced(self, name: str) -> tuple[StateStore, Callable[[], bool]] | None:
        """The store and the write check of one pass, fenced on the lease epoch it starts under:
        once the lease is lost (even if this replica takes it again), the pass writes nothing more."""
        token = self.leases.token(name)
        if token is None:
            return None
        owner, epoch = token
        return self.store.fenced(name, owner, epoch), lambda: self.leases.holds_epoch(name, epoch)

    def reconcile(self, name: str, reason: str) -> None:
        """One pass over one environment, as the pass policy says: apply a new revision, resync the applied one."""
        env = self.loaded.get(name)
        fenced = self._fenced(name)
        if env is None or fenced is None:
            return
        store, may_write = fenced
        with self._state_lock:
            refusal = self._refusals.pop(name, None)
        if refusal is not None:
            self._record_refusal(name, *refusal, store)
        try:
            account = self.runner.account_for(name, env.spec)
        except LensopsError as exc:
            log.error("account_guard_failed", environment=name, error=str(exc))
            metrics.count_result(name, "failed")
            return
        record = store.environment(name)
        hold = policy.runbook_hold(record, env)
        if hold is not None:
            self._resync_held(env, hold, account, store, may_write)
            return
        if record is not None and record.data.get(policy.HOLD_KEY):
            self._lift_hold(name, store)
            record = store.environment(name)
        decided = policy.decide(env, record, "sync", reason=reason, now=self.clock())
        gate = health.pending(store, name)
        if gate is not None and ((decided.execute and decided.new) or policy.rolling_back(record)):
            # A newer revision during a bake: the bake's alarms are read first, and a failure
            # rolls back to the healthy point before the newer revision is applied from there
            # (a rollback cut short is finished first, too).
            self._check_bake(name, env, gate, fenced)
            decided = policy.decide(env, store.environment(name), "sync", reason=reason, now=self.clock())
        if not decided.execute and decided.why:
            log.info("pass_planned_only", environment=name, revision=env.revision, reason=decided.why)
        outcome = self.engine.reconcile(
            env, account, execute=decided.execute, trigger=decided.trigger, retry_failed=False,
            keep_status=bool(health.held(store.environment(name), env)), may_write=may_write, store=store,
        )
        if decided.execute:
            gate = health.after_pass(self.engine, env, outcome, new=decided.new, store=store)
            if gate is not None:
                self._schedule_bake(name, gate.check_every)
        retry = outcome.plan.retry_after
        if retry is not None and not self.stop_event.is_set():
            # A throttled or busy resource is worth another pass at its own delay, not a whole resync away.
            when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=retry)
            self.scheduler.add_job(self.schedule, "date", run_date=when, args=[name, "retry"], id=f"retry:{name}", replace_existing=True)
            log.info("pass_requeued", environment=name, after_s=retry, resources=[r.ident for r in outcome.plan.resources if r.retry_after is not None])
        if not outcome.ok and not self.stop_event.is_set():
            ctx = self.engine.context(env, account)
            notify(ctx, env.spec, health.topic_arn(store, env), f"lensops: {name} reconcile failed", {
                "environment": name, "revision": env.revision, "errors": "; ".join((outcome.plan.errors + outcome.plan.failures())[:5])})
        self._drive_runbooks(env, account, store)

    # --- the rollback runbook's hold ------------------------------------------

    def request_rollback(self, name: str, revision: str | None) -> str:
        """Apply an earlier healthy revision of ``name`` and hold it until a commit changes the environment.

        The earlier revision is rendered from Git and applied as any revision is (one
        writer); it passed its bake once, so it becomes the healthy point again.
        """
        env = self.loaded[name]
        fenced = self._fenced(name)
        if fenced is None:
            raise LensopsError(f"this replica no longer holds environment {name}'s lease")
        store, may_write = fenced
        record = store.environment(name) or EnvironmentRecord(name)
        target = revision or health.last_healthy_before(record, env)
        if not target:
            raise LensopsError(f"environment {name} has no earlier healthy revision to go back to")
        held = self._load_revision(name, target)
        account = self.runner.account_for(name, env.spec)
        outcome = self.engine.reconcile(
            held, account, execute=True, trigger="rollback", allow_mass_prune=True, keep_status=True, may_write=may_write, store=store
        )
        if outcome.ok:
            health.mark_healthy(store, name, target, held.digest)
        record = store.environment(name) or EnvironmentRecord(name)
        record.data = {**record.data, policy.HOLD_KEY: {"revision": target, "after": env.revision, "after_digest": env.manifests_digest}}
        record.status = "held" if outcome.ok else "failed"
        record.message = f"held on {target[:12]} by the rollback runbook until a commit changes the environment's manifests (after {env.revision[:12]})"
        store.put_environment(record)
        self._held_envs[name] = held
        log.warning("environment_held", environment=name, revision=target, until_newer_than=env.revision)
        if not outcome.ok:
            raise LensopsError(f"rollback to {target[:12]} failed: {'; '.join(outcome.plan.errors) or 'see status'}")
        return target

    def _load_revision(self, name: str, revision: str) -> EnvironmentDesired:
        checkout = self.runner.source.export(revision)
        result = load_tree(checkout.root, self.runner.registry, [name], account=self._account)
        if name not in result.environments:
            problems = "; ".join(str(p) for p in result.problems.get(name, [])[:3])
            raise LensopsError(f"revision {revision[:12]} of {name} cannot be loaded: {problems}")
        held = result.environments[name]
        held.revision = revision
        held.runs = []
        return held

    def _lift_hold(self, name: str, store: StateStore) -> None:
        """A commit changed the environment: the rollback runbook's hold ends."""
        record = store.environment(name)
        if record is None:
            return
        record.data = {k: v for k, v in record.data.items() if k != policy.HOLD_KEY}
        store.put_environment(record)
        self._held_envs.pop(name, None)
        log.info("hold_lifted", environment=name, revision=self.loaded[name].revision)

    def _resync_held(
        self, env: EnvironmentDesired, hold: dict[str, Any], account: str, store: StateStore, may_write: Callable[[], bool]
    ) -> None:
        """Keep the held revision live (self-heal as usual), and drive the current commit's runbooks."""
        name = env.name
        if name not in self._held_envs:
            self._held_envs[name] = self._load_revision(name, hold["revision"])
        held = self._held_envs[name]
        decided = policy.decide(held, store.environment(name), "sync", now=self.clock())
        self.engine.reconcile(
            held, account, execute=decided.execute, trigger="hold", retry_failed=False, keep_status=True, may_write=may_write, store=store
        )
        self._drive_runbooks(env, account, store)

    # --- runbooks ------------------------------------------------------------

    def _drive_runbooks(self, env: EnvironmentDesired, account: str, store: StateStore) -> None:
        """Advance the environment's RunbookRuns through the pass's fenced store (sync windows, holds and
        prune do not stop them); when one waits, a one-off job schedules the environment again at its next check."""
        if self.stop_event.is_set() or not env.runs:
            return
        progress = drive_runbooks(
            store, env, self.engine.context(env, account), request_rollback=lambda revision: self.request_rollback(env.name, revision)
        )
        due = [p.next_check for p in progress if p.next_check is not None]
        if due and not self.stop_event.is_set():
            when = dt.datetime.fromtimestamp(min(due), dt.timezone.utc)
            self.scheduler.add_job(self.schedule, "date", run_date=when, args=[env.name, "runbook"], id=f"runbook:{env.name}", replace_existing=True)

    # --- health gates ------------------------------------------------------

    def _schedule_bake(self, name: str, delay: float) -> None:
        """Check the environment's bake in ``delay`` seconds, unless a check is due sooner: a pass
        (a resync every second, a retry) never puts off a check already planned."""
        now = dt.datetime.now(dt.timezone.utc)
        when = now + dt.timedelta(seconds=delay)
        planned = self.scheduler.get_job(f"bake:{name}")
        # A job whose time has come is the check running now (apscheduler drops it once started).
        if planned is not None and planned.next_run_time is not None and now < planned.next_run_time <= when:
            return
        self.scheduler.add_job(self._bake_job, "date", run_date=when, id=f"bake:{name}", args=[name], replace_existing=True)

    def _bake_job(self, name: str) -> None:
        """Re-check an environment's health gate; reschedule while it bakes."""
        fenced = self._fenced(name)
        if fenced is None or self.stop_event.is_set() or name not in self._locks:
            return
        with self._locks[name]:
            # Read under the lock: a pass may just have applied a newer revision and replaced the gate.
            env = self.loaded.get(name)
            gate = health.pending(fenced[0], name)
            if env is None or gate is None:
                return
            result = self._check_bake(name, env, gate, fenced)
        if result == "baking":
            self._schedule_bake(name, gate.check_every)

    def _check_bake(self, name: str, env: EnvironmentDesired, gate: health.Gate, fenced: tuple[StateStore, Callable[[], bool]]) -> str:
        """One check of a gate (the caller holds the environment's lock), through the caller's fenced store."""
        store, may_write = fenced
        try:
            return health.check(self.engine, env, self.runner.account_for(name, env.spec), gate, store=store, may_write=may_write)
        except LeaseLost:
            self.leases.lost(name)
        except Exception as exc:  # an unreadable alarm keeps the gate open, it never rolls back
            log.warning("bake_check_failed", environment=name, error=f"{type(exc).__name__}: {exc}")
        return "baking"


def run_daemon(settings: Settings, repo: str | None = None, envs: list[str] | None = None) -> int:
    """``lensops run``: serve until SIGTERM or SIGINT, then exit 0."""
    logs.configure(settings.log_format, "info")
    daemon = Daemon(settings, repo, envs)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("signal_received", signal=signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    daemon.start()
    while not stop.wait(1.0):
        pass
    daemon.stop()
    return 0
