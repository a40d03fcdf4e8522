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

from controller import health, logs, metrics, pacing, policy
from controller.engine import APPLIED_DIGEST, DECOMMISSIONED, REFUSED_KEY
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
from controller.status import REMOVED, status_document
from runbooks import CATALOGUE as RUNBOOKS
from runbooks.executor import drive as drive_runbooks

log = logs.get("lensops.daemon")

SHUTDOWN_SECONDS = 25.0
RETIRED = (REMOVED, DECOMMISSIONED)
"""Statuses of an environment the daemon no longer runs (``lensops decommission`` ends a removed one)."""


def _count_removed(records: list[EnvironmentRecord]) -> None:
    """``lensops_environments_removed``: the recorded environments whose folder left Git."""
    metrics.ENVIRONMENTS_REMOVED.set(sum(1 for r in records if r.status == REMOVED))


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
        self._no_refusal: set[str] = set()
        """Environments whose record this process knows holds no refusal (no store read to end one at each pass)."""
        self._new_envs: set[str] = set()
        """Environments a fetch loaded that the state store had no record of (a commit added them)."""
        self._leases_since: float | None = None
        """When the first lease tick with environments to share ran (monotonic): gains soon after are this process's start."""
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
            if not entry.get("refused"):  # refused here, not recorded yet (it is, under the environment's lock)
                entry["status"] = "invalid"
                entry["refused"] = {"revision": self.fetched_revision, "refusedAt": None, "problems": entry["invalid"]}
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
            every = self.store.environments()
            records = {r.environment: r for r in every if r.status not in RETIRED}
            _count_removed(every)
        except Exception as exc:  # the store is away: what it records is looked at again at the next revision
            log.warning("state_read_failed", error=f"{type(exc).__name__}: {exc}")
            records = {}
        recorded = set(records)
        with self._state_lock:
            for name, env in result.environments.items():
                env.revision = checkout.revision
                if name not in self.loaded and name not in recorded:
                    self._new_envs.add(name)
                self.loaded[name] = env
                self.invalid.pop(name, None)
                self._refusals.pop(name, None)  # an older commit's refusal not recorded yet: a newer commit loads
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
            self._no_refusal.discard(name)
            self._refuse(name, checkout.revision, problems)
            if name not in self.loaded and name in records:
                self._keep_applied(name, records[name])
        for name in sorted(changed):
            self._ensure_env(name)
            self.schedule(name, "revision")
        self.first_loaded.set()
        try:  # take the leases of newly loaded environments now, not at the next tick
            self.scheduler.modify_job("leases", next_run_time=dt.datetime.now(dt.timezone.utc))
        except LookupError:
            pass

    def _keep_applied(self, name: str, record: EnvironmentRecord) -> None:
        """An environment refused before this process ever loaded it valid (it started on an invalid
        commit): its applied revision, read back from Git, stays live and is reconciled as it would
        have been, until a valid commit comes. Only when Git gives back the very content that was
        applied (not a working copy's ``-dirty`` changes, nor a plain folder's)."""
        if not record.applied_revision:
            return
        try:
            env = self._load_revision(name, record.applied_revision)
        except LensopsError as exc:
            log.warning("applied_revision_not_loaded", environment=name, revision=record.applied_revision, error=str(exc))
            return
        if env.digest != record.data.get(APPLIED_DIGEST):
            log.warning("applied_revision_not_loaded", environment=name, revision=record.applied_revision, error="Git's content differs from what was applied")
            return
        with self._state_lock:
            if name in self.loaded or name not in self.invalid:
                return  # a valid commit came meanwhile
            self.loaded[name] = env
        self._ensure_env(name)
        self.schedule(name, "resync")
        log.info("applied_revision_kept", environment=name, revision=record.applied_revision)

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
                _count_removed(self.store.environments())
            except Exception as exc:  # the store is away: the status row says so at the next revision
                log.error("environment_removal_failed", environment=name, error=f"{type(exc).__name__}: {exc}")
            metrics.forget_environment(name)
            log.warning("environment_removed", environment=name, revision=revision)

    def _refuse(self, name: str, revision: str, problems: list[Problem]) -> None:
        """An invalid revision of ``name``: counted and logged now; recorded by the replica that holds
        the environment's lease, under its lock and fence (the record is read and rewritten whole:
        never beside a pass or a bake check of it), at once or, when busy, by its next pass. Another
        replica's lease: it records it, and this one too at its first pass should it take the lease
        over first (a refusal is recorded once per commit, whoever records it)."""
        metrics.environment_seen(name)  # one never valid yet has its other results' series too, at 0
        metrics.count_result(name, "invalid")
        for problem in problems:
            log.error("manifest_invalid", environment=name, revision=revision, problem=str(problem))
        lock = self._locks.get(name)
        if lock is None and not policy.live_lease_holder(self.store, name, me=self.leases.owner):
            # Never loaded (valid) here and nobody holds it: no pass, no bake of it to write beside.
            self._record_refusal(name, revision, problems, self.store)
            return
        fenced = self._fenced(name) if lock is not None else None
        if lock is None or fenced is None:
            with self._state_lock:
                self._refusals[name] = (revision, problems)
            return
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
        """Keep the refused revision and its problems in the environment's record (``lensops status``
        shows them until a newer commit of the environment loads) and give it one history row, result
        ``invalid``: once per refused commit, not at each resync, restart or replica that sees it again.
        The applied revision, its status and its message stay as its passes leave them."""
        record = store.environment(name) or EnvironmentRecord(name)
        if (record.data.get(REFUSED_KEY) or {}).get("revision") == revision:
            return  # recorded already
        summary = f"revision {revision[:12]} refused: {problems[0]}" + (f" (+{len(problems) - 1} more)" if len(problems) > 1 else "")
        row = store.start_revision(name, revision, "revision")
        store.finish_revision(row, "invalid", summary, [])
        refused = {"revision": revision, "problems": [str(p) for p in problems[:100]], "at": time.time()}
        record.data = {**record.data, REFUSED_KEY: refused}
        store.put_environment(record)

    def _end_refusal(self, name: str, store: StateStore) -> None:
        """A newer commit of the environment loaded: the refused revision is no longer news."""
        record = store.environment(name)
        if record is None or REFUSED_KEY not in record.data:
            return
        refused = record.data[REFUSED_KEY]
        record.data = {k: v for k, v in record.data.items() if k != REFUSED_KEY}
        if record.status == "invalid":  # recorded by an older lensops; this pass sets the status
            record.status, record.message = "unknown", ""
        store.put_environment(record)
        log.info("refusal_ended", environment=name, refused=refused.get("revision", ""), revision=self.loaded[name].revision)

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
        if self._leases_since is None and self.loaded:
            self._leases_since = time.monotonic()
        for name in lost:
            log.info("environment_handed_over", environment=name)
        for name in gained:
            self._no_refusal.discard(name)  # another replica may have recorded one meanwhile
            if health.pending(self.store, name) is not None:
                log.info("bake_resumed", environment=name)
                self._schedule_bake(name, 0.0)
            self.schedule(name, self._gained(name))

    def _gained(self, name: str) -> str:
        """Why the first pass of an environment this replica just took runs (the history's trigger
        when it applies a new revision): ``startup`` when this process takes it as it starts (within
        two lease times of its first lease tick, the time a dead predecessor's lease takes to run
        out), ``revision`` for an environment a commit added, ``takeover`` from another replica."""
        new = name in self._new_envs
        self._new_envs.discard(name)
        if self._leases_since is not None and time.monotonic() - self._leases_since <= 2 * self.leases.ttl:
            return "startup"
        return "revision" if new else "takeover"

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

    def _behind(self, name: str, mine: str, applied: str) -> bool:
        """Whether another replica applied a newer commit than the one this replica fetched: then
        this pass would take the environment back, so it does nothing until this replica's fetch
        catches up (a fetch is asked for at once)."""
        try:
            behind = self.runner.source.behind(mine, applied)
        except Exception as exc:  # Git unreadable here: the fetch job reports it; do not guess forward
            log.warning("revision_order_unknown", environment=name, error=f"{type(exc).__name__}: {exc}"[:300])
            return True
        if behind:
            log.warning("behind_on_git", environment=name, revision=mine, applied=applied)
            self.trigger_fetch("behind")
        return behind

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
            current = name not in self.invalid
        if refusal is not None:
            self._record_refusal(name, *refusal, store)
        elif current and name not in self._no_refusal:
            self._end_refusal(name, store)
            self._no_refusal.add(name)
        try:
            account = self.runner.account_for(name, env.spec)
        except LensopsError as exc:
            log.error("account_guard_failed", environment=name, error=str(exc))
            metrics.count_result(name, "failed")
            return
        record = store.environment(name)
        if record is not None and self._behind(name, env.revision, record.applied_revision):
            return
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
        with pacing.urgent():  # a rollback goes before the applies waiting for the API rates
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
