"""Drive runbook runs: claim once, checkpoint every step, resume after a crash, never sleep.

Where this stands in the house: called by the daemon after each pass of an
environment and by ``lensops apply``; it reads and writes the state store's
conditional items (see ``runbooks/record.py``) and calls one step of a
runbook (``runbooks/base.py``) at a time.

``advance`` takes one ``RunbookRun`` as far as it can without waiting:

- **Claim.** The first conditional put (create-if-absent) of
  ``runbook/<env>/<name>`` is the claim; it also takes the first step. A
  claim that exists and is finished is never run again (removing and
  re-adding the manifest, or editing its parameters, changes nothing: the
  change is logged and kept on the record for status).
- **Each step** is taken by a conditional put (state ``running``, this
  executor as owner, a lease), run, and checkpointed by a conditional put
  on the version read. Losing either put means another executor (a replica,
  another process) advanced the run: this one stops. So every step is run
  by one executor at a time, and a step is run again only when its holder
  died before checkpointing it (its lease expired) — steps are idempotent.
- **Answers.** ``done`` checkpoints the outputs and goes on; ``wait``
  checkpoints the step as waiting and returns when to check again (the
  caller reschedules); ``fail`` or a timeout (per step from its first
  attempt, per run from the claim) finishes the run as failed.
- **Results.** The executor whose put finished the run counts it once in
  ``lensops_runbook_runs_total{runbook,result}``, logs ``runbook_finished``
  and sends the notification.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from controller import logs, metrics
from controller.errors import RetryableError, classify
from controller.manifests.model import EnvironmentDesired, Resource
from controller.notify import notify as send_notification
from controller.state import StateStore
from controller.kinds import Context
from runbooks import CATALOGUE
from runbooks.base import Notifier, RollbackRequester, Runbook, RunContext, Step, StepResult, fail, wait
from runbooks.record import (
    DONE,
    FAILED,
    NAMESPACE,
    RUNNING,
    STEP_FAILED,
    STEP_RUNNING,
    SUCCEEDED,
    WAITING,
    RunRecord,
    StepRecord,
    run_key,
    runbook_runs,
)

__all__ = ["Progress", "RunRequest", "advance", "drive", "notifier_for", "owner_id", "runbook_runs"]

log = logs.get("lensops.runbook")

STEP_LEASE_SECONDS = 300.0
"""How long a step taken by an executor is its alone; after that, its holder is presumed dead."""


@dataclass(frozen=True)
class RunRequest:
    """One ``RunbookRun`` manifest of one environment, at one revision."""

    environment: str
    name: str
    runbook: str
    parameters: dict[str, Any]
    revision: str = ""

    @classmethod
    def from_resource(cls, resource: Resource, revision: str) -> "RunRequest":
        return cls(resource.environment, resource.name, str(resource.spec["runbook"]), dict(resource.spec.get("parameters") or {}), revision)

    @property
    def key(self) -> str:
        return run_key(self.environment, self.name)


@dataclass
class Progress:
    """Where a run stands after ``advance``."""

    environment: str
    name: str
    runbook: str
    state: str
    """``running``, ``succeeded`` or ``failed``."""
    next_check: float | None = None
    """Wall-clock time to call ``advance`` again; None: nothing to schedule (finished, or another executor holds it)."""
    message: str = ""
    step: str = ""
    already_finished: bool = False
    """Finished before this call (this call did nothing)."""
    outputs: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.state in (SUCCEEDED, FAILED)


@functools.lru_cache(maxsize=1)
def owner_id() -> str:
    """This process as a step owner: host, pid and a random part (a restarted process is a new owner)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _holder_died(owner: str) -> bool:
    """True when a step's holder is a process of this host that no longer runs (a crash or a
    restart here: no need to wait for its lease). Holders on other hosts wait for the lease."""
    host, _, rest = owner.partition(":")
    pid_text, _, _nonce = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return owner != owner_id()  # an earlier process that had this pid (a container's pid 1 restarted)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _digest(runbook: str, parameters: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps([runbook, parameters], sort_keys=True, default=str).encode()).hexdigest()[:16]


def advance(
    store: StateStore,
    request: RunRequest,
    aws: Context,
    *,
    owner: str | None = None,
    notify: Notifier | None = None,
    request_rollback: RollbackRequester | None = None,
    clock: Callable[[], float] = time.time,
    registry: Mapping[str, Runbook] | None = None,
) -> Progress:
    """Take one run as far as it goes now; see the module docstring. Never sleeps."""
    runbook = (registry or CATALOGUE).get(request.runbook)
    if runbook is None:
        return Progress(request.environment, request.name, request.runbook, FAILED, message=f"unknown runbook {request.runbook!r}")
    return _Driver(store, request, runbook, aws, owner or owner_id(), notify, request_rollback, clock).run()


class _Driver:
    """One call of ``advance``: the loop over claim, take, run, checkpoint."""

    def __init__(
        self,
        store: StateStore,
        request: RunRequest,
        runbook: Runbook,
        aws: Context,
        owner: str,
        notify: Notifier | None,
        request_rollback: RollbackRequester | None,
        clock: Callable[[], float],
    ):
        self.store = store
        self.request = request
        self.runbook = runbook
        self.aws = aws
        self.owner = owner
        self.notify = notify
        self.request_rollback = request_rollback
        self.clock = clock
        self.fields = {"environment": request.environment, "revision": request.revision, "run": request.name, "runbook": runbook.name}

    # --- the loop ------------------------------------------------------------

    def run(self) -> Progress:
        held: tuple[RunRecord, int, int] | None = None
        """The record, its version and the index of the step this executor holds, if any."""
        for _ in range(4 * len(self.runbook.steps) + 8):
            if held is None:
                got = self.store.get_item(NAMESPACE, self.request.key)
                if got is None:
                    claimed = self._claim()
                    if claimed is None:
                        continue  # another executor claimed it first: read its claim
                    held = (claimed[0], claimed[1], 0)
                else:
                    record, version = RunRecord.from_item(got[0]), got[1]
                    if record.finished:
                        return self._already_finished(record, version)
                    if self._note_change(record, version):
                        continue
                    taken = self._take(record, version)
                    if isinstance(taken, Progress):
                        return taken
                    if taken is None:
                        continue
                    held = (record, taken[0], taken[1])
            answer = self._run_step(*held)
            if isinstance(answer, Progress):
                return answer
            held = answer
        # Every turn lost a race: others are busy with this run; look again soon.
        return Progress(self.request.environment, self.request.name, self.runbook.name, RUNNING, next_check=self.clock() + 5, message="contended")

    def _claim(self) -> tuple[RunRecord, int] | None:
        now = self.clock()
        steps = [StepRecord(s.name) for s in self.runbook.steps]
        self._hold(steps[0], now)
        record = RunRecord(
            environment=self.request.environment,
            name=self.request.name,
            runbook=self.runbook.name,
            parameters=dict(self.request.parameters),
            revision=self.request.revision,
            started_at=now,
            deadline=now + self.runbook.timeout,
            steps=steps,
        )
        if not self.store.put_item(NAMESPACE, self.request.key, record.to_item(), None):
            return None
        log.info("runbook_claimed", **self.fields, parameters=record.parameters, owner=self.owner)
        return record, 1

    def _take(self, record: RunRecord, version: int) -> tuple[int, int] | Progress | None:
        """Take the first unfinished step: its new version and index; a Progress to stop; None to re-read."""
        now = self.clock()
        if [s.name for s in record.steps] != [s.name for s in self.runbook.steps]:
            return self._finish(record, version, FAILED, "the runbook's steps changed since the run was claimed (an upgrade?): not resumed")
        if now > record.deadline:
            return self._finish(record, version, FAILED, f"run timed out after {_minutes(self.runbook.timeout)}")
        index = record.first_unfinished()
        if index is None:
            return self._finish(record, version, SUCCEEDED, "")
        state = record.steps[index]
        definition = self.runbook.steps[index]
        if state.state == STEP_RUNNING and state.owner != self.owner and state.lease_until > now and not _holder_died(state.owner):
            return self._progress(record, next_check=state.lease_until, message=f"step {state.name} is being run by {state.owner}")
        if state.state == WAITING and state.next_check > now:
            return self._progress(record, next_check=state.next_check, message=state.message)
        if state.started_at and now - state.started_at > definition.timeout:
            state.state, state.finished_at = STEP_FAILED, now
            state.message = f"timed out after {_minutes(definition.timeout)}" + (f" ({state.message})" if state.message else "")
            return self._finish(record, version, FAILED, f"step {state.name} {state.message}")
        if state.state == STEP_RUNNING and state.owner != self.owner:
            log.warning("runbook_step_taken_over", **self.fields, step=state.name, previous_owner=state.owner)
        self._hold(state, now)
        if not self.store.put_item(NAMESPACE, record.key, record.to_item(), version):
            log.info("runbook_race_lost", **self.fields, step=state.name, at="take")
            return self._progress(record, next_check=None, message="another executor advanced the run")
        return version + 1, index

    def _hold(self, state: StepRecord, now: float) -> None:
        """Mark a step as this executor's (written by the caller's next conditional put)."""
        state.state, state.owner, state.attempts = STEP_RUNNING, self.owner, state.attempts + 1
        state.started_at = state.started_at or now
        state.lease_until = now + STEP_LEASE_SECONDS

    def _run_step(self, record: RunRecord, version: int, index: int) -> Progress | tuple[RunRecord, int, int] | None:
        """Run the held step and checkpoint its answer.

        A done step's checkpoint also takes the next step (one conditional put), so that
        the executor that holds a run keeps it from step to step. Returns what to hold
        next, None to read the record again, or a Progress to stop."""
        definition = self.runbook.steps[index]
        state = record.steps[index]
        result = self._call(definition, record, state)
        now = self.clock()
        state.owner, state.lease_until = "", 0.0
        if result.outcome == "fail":
            state.state, state.finished_at, state.message = STEP_FAILED, now, result.message
            log.error("runbook_step_failed", **self.fields, step=state.name, attempt=state.attempts, error=result.message)
            return self._finish(record, version, FAILED, f"step {state.name}: {result.message}")
        if result.outcome == "wait":
            deadline = min(state.started_at + definition.timeout, record.deadline)
            state.state, state.message = WAITING, result.message
            state.next_check = min(now + result.seconds, deadline + 1.0)
        else:
            state.state, state.finished_at, state.message, state.outputs = DONE, now, "", result.outputs
            record.outputs.update(result.outputs)
        following = index + 1 if (result.outcome == "done" and index + 1 < len(record.steps) and now <= record.deadline) else None
        if following is not None:
            self._hold(record.steps[following], now)
        if not self.store.put_item(NAMESPACE, record.key, record.to_item(), version):
            log.info("runbook_race_lost", **self.fields, step=state.name, at="checkpoint")
            return self._progress(record, next_check=None, message="another executor advanced the run")
        if result.outcome == "wait":
            log.info("runbook_step_waiting", **self.fields, step=state.name, attempt=state.attempts, reason=result.message, seconds=round(state.next_check - now, 1))
            return self._progress(record, next_check=state.next_check, message=result.message)
        log.info("runbook_step_done", **self.fields, step=state.name, attempt=state.attempts, duration_s=round(now - state.started_at, 3))
        return None if following is None else (record, version + 1, following)

    def _call(self, definition: Step, record: RunRecord, state: StepRecord) -> StepResult:
        ctx = RunContext(
            environment=record.environment,
            name=record.name,
            runbook=record.runbook,
            revision=record.revision,
            parameters=dict(record.parameters),
            outputs=dict(record.outputs),
            aws=self.aws,
            step=state.name,
            attempt=state.attempts,
            now=self.clock(),
            notify=self.notify,
            request_rollback=self.request_rollback,
        )
        try:
            return definition.run(ctx)
        except Exception as exc:  # mapped onto the taxonomy and recorded on the step
            error = classify(exc)
            if isinstance(error, RetryableError):
                log.warning("runbook_step_retry", **self.fields, step=state.name, attempt=state.attempts, error=str(error))
                return wait(error.delay, f"retrying: {error}")
            return fail(str(error))

    # --- finishing and finished runs ------------------------------------------------

    def _finish(self, record: RunRecord, version: int, result: str, message: str) -> Progress | None:
        """Finish the run by a conditional put; the executor that wins counts, logs and notifies."""
        record.state, record.finished_at, record.message, record.notified = result, self.clock(), message, False
        if not self.store.put_item(NAMESPACE, record.key, record.to_item(), version):
            log.info("runbook_race_lost", **self.fields, at="finish")
            return None
        metrics.RUNBOOK_RUNS.labels(self.runbook.name, result).inc()
        event = log.info if result == SUCCEEDED else log.error
        event(
            "runbook_finished",
            **self.fields,
            result=result,
            message=message,
            duration_s=round(record.finished_at - record.started_at, 3),
            steps=[f"{s.name}:{s.state}" for s in record.steps],
        )
        self._send(record)
        self._mark_notified(version + 1)
        return self._progress(record)

    def _send(self, record: RunRecord) -> None:
        if self.notify is None:
            return
        fields: dict[str, Any] = {"environment": record.environment, "run": record.name, "runbook": record.runbook, "result": record.state}
        if record.message:
            fields["message"] = record.message
        fields.update({k: record.outputs[k] for k in self.runbook.report if record.outputs.get(k) not in (None, "")})
        self.notify(f"lensops: {record.environment} runbook {record.runbook} {record.name} {record.state}", fields)

    def _mark_notified(self, version: int) -> bool:
        got = self.store.get_item(NAMESPACE, self.request.key)
        if got is None or got[1] != version:
            return False
        record = RunRecord.from_item(got[0])
        record.notified = True
        return self.store.put_item(NAMESPACE, record.key, record.to_item(), version)

    def _already_finished(self, record: RunRecord, version: int) -> Progress:
        if self._note_change(record, version):
            got = self.store.get_item(NAMESPACE, self.request.key)
            if got is not None:
                record, version = RunRecord.from_item(got[0]), got[1]
        if not record.notified:
            # The executor that finished it died before notifying: whoever marks it sends it.
            record.notified = True
            if self.store.put_item(NAMESPACE, record.key, record.to_item(), version):
                self._send(record)
        log.debug("runbook_already_finished", **self.fields, result=record.state)
        return self._progress(record, already_finished=True)

    def _note_change(self, record: RunRecord, version: int) -> bool:
        """Keep on the record (once per change) that the manifest now asks something else.

        True when it tried to write (won or lost): the caller reads the record again."""
        if (self.request.runbook, self.request.parameters) == (record.runbook, record.parameters):
            return False
        digest = _digest(self.request.runbook, self.request.parameters)
        if record.ignored.get("digest") == digest:
            return False
        why = "finished runs are never run again" if record.finished else "a run in progress keeps the parameters it was claimed with"
        changed = sorted(k for k in set(self.request.parameters) | set(record.parameters) if self.request.parameters.get(k) != record.parameters.get(k))
        record.ignored = {
            "digest": digest,
            "revision": self.request.revision,
            "runbook": self.request.runbook,
            "parameters": dict(self.request.parameters),
            "message": f"manifest changed ({', '.join(changed) or 'runbook'}) after the run was claimed: not acted on, {why}; commit a RunbookRun with a new name to run again",
        }
        log.warning("runbook_change_ignored", **self.fields, state=record.state, changed=changed)
        self.store.put_item(NAMESPACE, record.key, record.to_item(), version)
        return True

    def _progress(self, record: RunRecord, next_check: float | None = None, message: str = "", already_finished: bool = False) -> Progress:
        index = record.first_unfinished()
        return Progress(
            environment=record.environment,
            name=record.name,
            runbook=record.runbook,
            state=record.state,
            next_check=None if record.finished else next_check,
            message=message or record.message,
            step="" if index is None else record.steps[index].name,
            already_finished=already_finished,
            outputs=dict(record.outputs),
        )


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min"


# --- every run of an environment ------------------------------------------------------


def notifier_for(aws: Context, env: EnvironmentDesired, store: StateStore) -> Notifier:
    """Send to the environment's notification topic (``ref:Topic/x`` resolved from the store) and webhook."""

    def send(subject: str, fields: dict[str, Any]) -> None:
        topic = env.spec.notifications.topic
        if topic and topic.startswith("ref:"):
            record = store.resources(env.name).get(topic[4:].split(".")[0])
            topic = record.arn if record else None
        send_notification(aws, env.spec, topic or None, subject, fields)

    return send


def drive(
    store: StateStore,
    env: EnvironmentDesired,
    aws: Context,
    *,
    request_rollback: RollbackRequester | None = None,
    clock: Callable[[], float] = time.time,
) -> list[Progress]:
    """``advance`` every ``RunbookRun`` of an environment; one run's crash does not stop the others."""
    out = []
    notify = notifier_for(aws, env, store)
    for resource in env.runs:
        request = RunRequest.from_resource(resource, env.revision)
        metrics.runbooks_known((request.runbook,))  # the series exist (at 0) before a run ends (the daemon made them at start)
        try:
            out.append(advance(store, request, aws, notify=notify, request_rollback=request_rollback, clock=clock))
        except Exception as exc:  # a bug or a store failure in one run is reported, the others go on
            log.exception("runbook_advance_crashed", environment=env.name, revision=env.revision, run=resource.name, error=f"{type(exc).__name__}: {exc}")
            out.append(Progress(env.name, resource.name, request.runbook, RUNNING, next_check=clock() + 60, message=str(exc)))
    return out
