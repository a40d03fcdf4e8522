"""Health gates: after a revision is applied, watch its alarms for the bake time.

An environment's healthy point is the last time it passed a bake; before any
has passed, its first applied revision (the baseline). A gate opens when a
new revision (new content) is applied and the environment names health
alarms (``health.alarms``, plus ``deployment.alarms`` of changed LambdaAliases)
or a progressive delivery is stepping. It is re-checked on a schedule, never
by a sleeping thread in the daemon, and kept in the state store so that a
restarted daemon resumes it.

A newer revision applied during a bake does not pass it: the bake restarts
and covers every change since the healthy point. A pass of the same content
(self-heal, an unrelated commit) neither starts, ends nor passes a bake.

An alarm that transitions to ``ALARM`` during the bake (its state changed
after the first unpassed change started) fails it: with ``rollback: auto``
the engine restores the healthy point (``Engine.restore``: every resource
changed since goes back, with an apply's semantics), and the failed
revision's content is held until a commit changes it. An alarm already in
``ALARM`` before the apply does not count, and ``INSUFFICIENT_DATA`` never does.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from controller import logs, metrics, pacing
from controller.engine import (
    APPLIED_DIGEST,
    BAKE_KEY,
    BASELINE_KEY,
    FAILED_DIGEST,
    HEALTHY_DIGEST,
    Engine,
    Outcome,
    failed_content,
    healthy_revision,
    put_back,
)
from controller.engine.journal import POINT_KEY, clear_changes
from controller.errors import LensopsError
from controller.manifests.graph import is_ref, parse_ref
from controller.manifests.model import EnvironmentDesired
from controller.manifests.types import parse_duration
from controller.notify import notify
from controller.state import EnvironmentRecord, StateStore
from controller.alarms import BATCH, describe_alarms
from controller.kinds import Context, Registry

log = logs.get("lensops.health")

HEALTHY_HISTORY = "healthy_revisions"
"""The environment's last healthy revisions, oldest first, each with its content digest
(the targets of the rollback runbook)."""
ROLLING_BACK = "rolling_back"
"""Where an environment's record keeps a failed bake's rollback until it has run to its end."""

Progress = Callable[[str], None]
MayWrite = Callable[[], bool]

CLOCK_SLACK = 0.1
"""Seconds by which an alarm's transition (AWS's clock, milliseconds) may precede the pass start
(this host's clock) and still count as during the bake. Small on purpose: an alarm that went to
ALARM before a hotfix's apply must not roll the hotfix back; hosts keep NTP time (Amazon Time
Sync), and a transition in the first instants of an apply is not caused by it."""


@dataclass
class Gate:
    """A bake in progress: every change since the healthy point, watched for ``bake`` seconds."""

    revision: str
    digest: str
    started_at: float
    """When the first change not yet baked started: an alarm that went to ALARM since fails the bake."""
    until: float
    alarms: list[str]
    changed: list[str] = field(default_factory=list)
    """Kind/name of what the revisions under this bake changed (its LambdaAliases add their alarms)."""
    bake: float = 0.0
    rollouts: list[dict[str, Any]] = field(default_factory=list)
    """Progressive deliveries still stepping; the bake time counts from the last one's end."""

    @property
    def check_every(self) -> float:
        every = min(15.0, max(self.bake, 1.0) / 10)
        for rollout in self.rollouts:
            every = min(every, max(rollout["interval"], 1.0) / 4)
        return max(0.25, every)


def pending(store: StateStore, name: str) -> Gate | None:
    """The gate an environment is baking, if any (to resume after a restart)."""
    return _gate_of(store.environment(name))


def _gate_of(record: EnvironmentRecord | None) -> Gate | None:
    data = record.data.get(BAKE_KEY) if record else None
    if not data:
        return None
    if "digest" not in data:  # opened by a lensops without content digests: its changes were not journaled
        data = {
            **{k: data[k] for k in ("revision", "started_at", "until", "alarms", "bake", "rollouts") if k in data},
            "digest": "",
            "changed": [f"{c['kind']}/{c['name']}" for c in data.get("changed", [])],
        }
    return Gate(**data)


def held(record: EnvironmentRecord | None, env: EnvironmentDesired) -> str:
    """Why ``env``'s revision must not be applied (its content failed a bake), or ''."""
    if record is None or not failed_content(record, env):
        return ""
    return f"revision {record.failed_revision[:12]} failed its health check and is held until a commit changes the environment"


def last_healthy_before(record: EnvironmentRecord, env: EnvironmentDesired) -> str:
    """The newest healthy revision whose content differs from ``env``'s, or ''."""
    for entry in reversed(record.data.get(HEALTHY_HISTORY, [])):
        if entry["digest"] != env.digest:
            return str(entry["revision"])
    return ""


def alarm_names(registry: Registry, env: EnvironmentDesired, changed: list[str]) -> list[str]:
    """Physical names of the alarms that gate a bake of ``env`` over the ``changed`` resources:
    the environment's, and those each changed resource's kind adds (``Reconciler.gate_alarms``)."""
    by_ident = env.by_ident()
    wanted = list(env.spec.health.alarms)
    for ident in changed:
        resource = by_ident.get(ident)
        reconciler = registry.get(resource.kind) if resource is not None else None
        if resource is not None and reconciler is not None:
            wanted.extend(reconciler.gate_alarms(resource.spec))
    return env.alarm_names(wanted)


def firing(ctx: Context, names: list[str], since: float) -> list[str]:
    """The alarms among ``names`` that went to ALARM at or after ``since`` (Unix time, less ``CLOCK_SLACK``)."""
    client = ctx.client("cloudwatch")
    fired: list[str] = []
    for start in range(0, len(names), BATCH):
        for alarm in describe_alarms(client, names[start : start + BATCH]):
            updated = alarm.get("StateUpdatedTimestamp")
            if alarm.get("StateValue") == "ALARM" and updated is not None and updated.timestamp() >= since - CLOCK_SLACK:
                fired.append(alarm["AlarmName"])
    return sorted(fired)


def after_pass(engine: Engine, env: EnvironmentDesired, outcome: Outcome, *, new: bool, store: StateStore | None = None) -> Gate | None:
    """After an executing pass of ``env``: open, restart or keep the bake, or move the healthy point.

    ``new``: the pass applied content other than the environment's applied one.
    A new revision that wrote something (even if the pass failed on some other
    resource) is baked, the bake restarting for it and covering every change
    since the healthy point; one that changed nothing while nothing is baking is
    healthy at once. A pass of the same content (self-heal) restarts an open
    bake's time when it wrote, and hands the gate any rollout it started.
    Returns the gate now open, if any.
    """
    store = store or engine.store
    gate = pending(store, env.name)
    wrote = [f"{a['kind']}/{a['name']}" for a in outcome.applied]
    if not new and not outcome.rollouts:
        if gate is not None and wrote:
            gate.until = max(gate.until, time.time() + gate.bake)  # what it wrote gets a whole bake
            _save(store, env.name, gate)
        return gate
    if not outcome.ok and not wrote:
        return gate  # nothing new was written: the open bake, if any, goes on as it was
    if gate is None and not outcome.unbaked:
        if outcome.ok:
            mark_healthy(store, env.name, env.revision, env.digest)  # nothing changed since the healthy point
        return None
    changed = list(dict.fromkeys([*(gate.changed if gate else []), *wrote]))
    names = alarm_names(engine.registry, env, changed)
    # A newer write to a resource ends the rollout an older revision had it on.
    rollouts = [r for r in (gate.rollouts if gate else []) if r["ident"] not in wrote] + outcome.rollouts
    if not names and not rollouts:
        if outcome.ok:
            mark_healthy(store, env.name, env.revision, env.digest)  # no alarm to watch: healthy at once
        else:
            _save(store, env.name, None)
        return None
    revision, digest = (env.revision, env.digest) if new or gate is None else (gate.revision, gate.digest)
    bake = parse_duration(env.spec.health.bakeTime) if names else 0
    gate = Gate(
        revision=revision,
        digest=digest,
        started_at=gate.started_at if gate else outcome.started_at,
        until=time.time() + bake,
        alarms=names,
        changed=changed,
        bake=bake,
        rollouts=rollouts,
    )
    record = store.environment(env.name) or EnvironmentRecord(env.name)
    record.data = {**record.data, BAKE_KEY: asdict(gate)}
    if record.status in ("synced", "out_of_sync", "unknown"):
        record.status = "baking"
    store.put_environment(record)
    log.info("bake_started", environment=env.name, revision=revision, alarms=names, bake_s=bake, rollouts=len(gate.rollouts))
    return gate


def _save(store: StateStore, name: str, gate: Gate | None) -> None:
    """Keep ``gate`` as the environment's bake (None: no bake)."""
    record = store.environment(name) or EnvironmentRecord(name)
    data = {k: v for k, v in record.data.items() if k != BAKE_KEY}
    if gate is not None:
        data[BAKE_KEY] = asdict(gate)
    record.data = data
    store.put_environment(record)


def advance(
    engine: Engine, env: EnvironmentDesired, account: str, gate: Gate, store: StateStore, progress: Progress | None, may_write: MayWrite | None
) -> None:
    """Apply each rollout's next step once its interval has passed; the bake starts after the last."""
    now = time.time()
    moved = False
    for rollout in list(gate.rollouts):
        if now - rollout["step_started_at"] < rollout["interval"]:
            continue
        index = rollout["index"] + 1
        final = index >= len(rollout["steps"])
        target = rollout["final"] if final else rollout["steps"][index]
        outcome = engine.step(env, account, rollout, target, revision=gate.revision, may_write=may_write, store=store)
        if not outcome.ok:
            errors = "; ".join(f"{r.ident}: {r.message}" for r in outcome.plan.resources if r.status != "ok")
            raise LensopsError(f"rollout step {index + 1} of {rollout['ident']} failed: {errors}")
        moved = True
        if final:
            gate.rollouts.remove(rollout)
            log.info("rollout_completed", environment=env.name, revision=gate.revision, kind=rollout["kind"], name=rollout["name"])
            message = f"{rollout['ident']}: rollout complete"
        else:
            rollout.update(index=index, step_started_at=now)
            log.info("rollout_step", environment=env.name, revision=gate.revision, kind=rollout["kind"], name=rollout["name"], step=index + 1, steps=len(rollout["steps"]) + 1)
            message = f"{rollout['ident']}: step {index + 1} of {len(rollout['steps']) + 1}"
        if progress:
            progress(f"{env.name}: {message}")
        if not gate.rollouts:
            gate.until = time.time() + gate.bake
    if moved:
        _save(store, env.name, gate)


def mark_healthy(store: StateStore, name: str, revision: str, digest: str) -> None:
    """Environment ``name`` passed a bake on ``revision`` (content ``digest``): its healthy point moves here.

    One write of the environment's record moves the healthy point's number on, which
    voids every journal entry of the old one; their removal follows.
    """
    record = store.environment(name) or EnvironmentRecord(name)
    data = {k: v for k, v in record.data.items() if k not in (BAKE_KEY, BASELINE_KEY)}
    data[POINT_KEY] = int(data.get(POINT_KEY, 0)) + 1
    data[HEALTHY_DIGEST] = digest
    history = [h for h in data.get(HEALTHY_HISTORY, []) if h["revision"] != revision] + [{"revision": revision, "digest": digest}]
    data[HEALTHY_HISTORY] = history[-20:]
    record.data = data
    record.healthy_revision = revision
    if record.status == "baking":
        record.status = "synced"
    store.put_environment(record)
    clear_changes(store, name)


@pacing.urgent()
def check(
    engine: Engine,
    env: EnvironmentDesired,
    account: str,
    expected: Gate,
    *,
    store: StateStore | None = None,
    progress: Progress | None = None,
    may_write: MayWrite | None = None,
) -> str:
    """One re-check of the bake ``expected``: ``baking``, ``healthy``, ``rolled_back``, ``failed``,
    ``unhealthy`` (rollback off), or ``superseded`` (a newer revision's bake has replaced it).

    A failed bake is first written down (the failed content held, the rollback due), then the
    healthy point is restored; a restore cut short (shutdown, a lost lease) is taken up again by
    the next check, whoever makes it, before any alarm is read again. ``store`` and
    ``may_write`` are the caller's (the daemon's: fenced on its lease). Its AWS requests (the
    alarms, the rollout steps, the rollback) go first among those waiting for the API rates."""
    store = store or engine.store
    record = store.environment(env.name) or EnvironmentRecord(env.name)
    gate = _gate_of(record)
    if gate is None or (gate.revision, gate.digest, gate.started_at) != (expected.revision, expected.digest, expected.started_at):
        return "superseded"
    rolling = record.data.get(ROLLING_BACK)
    if rolling is None:
        fired = firing(engine.context(env, account), gate.alarms, gate.started_at) if gate.alarms else []
        if not fired:
            advance(engine, env, account, gate, store, progress, may_write)
            if gate.rollouts or time.time() < gate.until:
                return "baking"
            mark_healthy(store, env.name, gate.revision, gate.digest)
            log.info("bake_passed", environment=env.name, revision=gate.revision)
            return "healthy"
        off = env.spec.health.rollback == "off"
        rolling = {
            "reason": f"health check failed: {', '.join(fired)} went to ALARM during the bake",
            "only": sorted(r["ident"] for r in gate.rollouts) if off else None,
            "off": off,
        }
        log.error("health_check_failed", environment=env.name, revision=gate.revision, alarms=fired, rollback="off" if off else "auto")
        data = {**record.data, ROLLING_BACK: rolling}
        if not off:
            data[FAILED_DIGEST] = gate.digest
            record.failed_revision = gate.revision
        record.data, record.status, record.message = data, "rolling_back", rolling["reason"]
        store.put_environment(record)
    return _roll_back(engine, env, account, gate, store, rolling, may_write)


def _roll_back(
    engine: Engine, env: EnvironmentDesired, account: str, gate: Gate, store: StateStore, rolling: dict[str, Any], may_write: MayWrite | None
) -> str:
    """Restore the healthy point (with ``rollback: off``, only the stepping rollouts' traffic),
    then close the bake: the environment's status, the count, the notification."""
    only = set(rolling["only"]) if rolling["only"] is not None else None
    outcome = engine.restore(env, account, failed=gate.revision, only=only, may_write=may_write, store=store) if only != set() else None
    if outcome is not None and outcome.interrupted:
        return "baking"  # the next check takes the restore up again
    reason = rolling["reason"]
    record = store.environment(env.name) or EnvironmentRecord(env.name)
    data = {k: v for k, v in record.data.items() if k not in (BAKE_KEY, ROLLING_BACK)}
    ctx = engine.context(env, account)
    if rolling["off"]:
        record.data, record.status, record.message = data, "degraded", reason + " (rollback: off)"
        store.put_environment(record)
        metrics.count_result(env.name, "failed")
        notify(ctx, env.spec, topic_arn(store, env), f"lensops: {env.name} unhealthy after {gate.revision[:12]}", {"reason": reason, "rollback": "off"})
        return "unhealthy"
    assert outcome is not None
    restored_list = put_back(outcome.applied)
    errors = outcome.plan.failures()
    restored, restored_digest = healthy_revision(record)
    if restored and restored_digest:
        record.applied_revision, data[APPLIED_DIGEST] = restored, restored_digest
        metrics.set_applied_revision(env.name, restored)
    record.data, record.status = data, outcome.result
    if errors:
        record.message = f"{reason}; put back: {restored_list}; not put back: {'; '.join(errors[:5])}"
    elif not outcome.plan.resources:
        since = "the healthy point" if record.healthy_revision else "the first applied revision, which stays applied"
        record.message = f"{reason}; nothing to put back: nothing changed since {since}; the revision is held"
    else:
        record.message = f"{reason}; put back: {restored_list}"
    store.put_environment(record)
    event = "environment_rolled_back" if outcome.result == "rolled_back" else "environment_failed"
    log.warning(event, environment=env.name, revision=gate.revision, message=record.message)
    metrics.count_result(env.name, outcome.result)
    verb = "rolled back" if outcome.result == "rolled_back" else "failed"
    notify(ctx, env.spec, topic_arn(store, env), f"lensops: {env.name} {verb} {gate.revision[:12]}", {"reason": reason, "put back": restored_list, "held": gate.revision})
    return outcome.result


def topic_arn(store: StateStore, env: EnvironmentDesired) -> str | None:
    """The ARN of the environment's notification topic (a ``ref:`` resolved from the state store)."""
    topic = env.spec.notifications.topic
    if is_ref(topic):
        ref = parse_ref(str(topic))
        record = store.resources(env.name).get(ref.ident) if ref else None
        return record.arn if record else None
    return topic
