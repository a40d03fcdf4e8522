"""Health gates: after a revision is applied, watch its alarms for the bake time.

A gate starts when a pass changed something and the environment names
health alarms (``health.alarms``, plus ``deployment.alarms`` of changed
LambdaAliases). It is re-checked on a schedule, never by a sleeping thread
in the daemon. An alarm that transitions to ``ALARM`` during the bake (its
state changed after the apply started) fails the revision: with
``rollback: auto`` everything the revision changed is put back and the
revision is held until a newer commit. An alarm already in ``ALARM`` before
the apply does not count, and ``INSUFFICIENT_DATA`` never does. The gate is
stored in the state store, so a restarted daemon resumes it.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from controller import logs, metrics
from controller.diff import diff
from controller.engine import BAKE_KEY, Engine, Outcome, desired_from_record, spec_hash
from controller.manifests.model import EnvironmentDesired
from controller.manifests.types import parse_duration
from controller.notify import notify
from controller.rollback import rollback
from controller.state import EnvironmentRecord
from reconcilers.base import KINDS, Context, chunks

log = logs.get("lensops.health")

HEALTHY_HISTORY = "healthy_revisions"
"""The environment's last healthy revisions, oldest first, each with its content digest
(the targets of the rollback runbook)."""


def last_healthy_before(record: EnvironmentRecord, env: EnvironmentDesired) -> str:
    """The newest healthy revision whose content differs from ``env``'s, or ''."""
    current = content_digest(env)
    for entry in reversed(record.data.get(HEALTHY_HISTORY, [])):
        if entry["digest"] != current:
            return str(entry["revision"])
    return ""


@dataclass
class Gate:
    """A bake in progress for one revision of one environment."""

    revision: str
    started_at: float
    until: float
    alarms: list[str]
    changed: list[dict[str, Any]] = field(default_factory=list)
    pruned: list[dict[str, Any]] = field(default_factory=list)
    previous_healthy: str = ""
    bake: float = 0.0
    rollouts: list[dict[str, Any]] = field(default_factory=list)
    """Progressive deliveries still stepping; the bake time counts from the last one's end."""

    @property
    def check_every(self) -> float:
        every = min(15.0, max(self.bake, 1.0) / 10)
        for rollout in self.rollouts:
            every = min(every, max(rollout["interval"], 1.0) / 4)
        return max(0.25, every)


def alarm_names(env: EnvironmentDesired, changed: list[dict[str, Any]]) -> list[str]:
    """Physical names of the alarms that gate a revision of ``env`` that changed ``changed``."""
    by_ident = env.by_ident()
    wanted = list(env.spec.health.alarms)
    changed_idents = {f"{c['kind']}/{c['name']}" for c in changed}
    for resource in env.resources:
        if resource.kind == "LambdaAlias" and resource.ident in changed_idents:
            wanted.extend((resource.spec.get("deployment") or {}).get("alarms") or [])
    names: list[str] = []
    for item in wanted:
        if item.startswith("ref:"):
            target = by_ident.get(item[4:].split(".")[0])
            name = target.physical if target else ""
        else:
            name = item
        if name and name not in names:
            names.append(name)
    return names


def firing(ctx: Context, names: list[str], since: float) -> list[str]:
    """The alarms among ``names`` that went to ALARM at or after ``since`` (Unix time)."""
    client = ctx.client("cloudwatch")
    fired: list[str] = []
    for batch in chunks(names, 100):
        token = None
        while True:
            kwargs: dict[str, Any] = {"AlarmNames": batch, "AlarmTypes": ["MetricAlarm", "CompositeAlarm"], "MaxRecords": 100}
            if token:
                kwargs["NextToken"] = token
            page = client.describe_alarms(**kwargs)
            for alarm in page.get("MetricAlarms", []) + page.get("CompositeAlarms", []):
                updated = alarm.get("StateUpdatedTimestamp")
                if alarm.get("StateValue") == "ALARM" and updated is not None and updated.timestamp() >= since - 1.0:
                    fired.append(alarm["AlarmName"])
            token = page.get("NextToken")
            if not token:
                break
    return sorted(fired)


def start(engine: Engine, env: EnvironmentDesired, outcome: Outcome) -> Gate | None:
    """After a successful apply: a gate to watch, or None when the revision is healthy already."""
    record = engine.store.environment(env.name) or EnvironmentRecord(env.name)
    names = alarm_names(env, outcome.applied) if outcome.applied else []
    if not names and not outcome.rollouts:
        mark_healthy(engine, env, env.revision)
        return None
    bake = parse_duration(env.spec.health.bakeTime) if names else 0
    gate = Gate(
        revision=env.revision,
        started_at=outcome.started_at,
        until=time.time() + bake,
        alarms=names,
        changed=outcome.applied,
        pruned=outcome.pruned,
        previous_healthy=record.healthy_revision,
        bake=bake,
        rollouts=outcome.rollouts,
    )
    record.data = {**record.data, BAKE_KEY: asdict(gate)}
    record.status = "baking"
    engine.store.put_environment(record)
    log.info("bake_started", environment=env.name, revision=env.revision, alarms=names, bake_s=bake, rollouts=len(gate.rollouts))
    return gate


def _save(engine: Engine, name: str, gate: Gate) -> None:
    record = engine.store.environment(name) or EnvironmentRecord(name)
    record.data = {**record.data, BAKE_KEY: asdict(gate)}
    engine.store.put_environment(record)


def advance(engine: Engine, ctx: Context, env: EnvironmentDesired, gate: Gate, progress: Any = None) -> None:
    """Apply each rollout's next step once its interval has passed; the bake starts after the last."""
    now = time.time()
    moved = False
    for rollout in list(gate.rollouts):
        if now - rollout["step_started_at"] < rollout["interval"]:
            continue
        index = rollout["index"] + 1
        final = index >= len(rollout["steps"])
        target = rollout["final"] if final else rollout["steps"][index]
        reconciler = KINDS[rollout["kind"]].reconciler(ctx)  # type: ignore[misc]
        desired = desired_from_record(rollout["kind"], rollout["name"], rollout["desired"])
        live = reconciler.observe([rollout["physical"]]).get(rollout["physical"])
        if live is None:
            reconciler.create(desired, target)
        else:
            reconciler.update(desired, target, live, diff(target, reconciler.compare_view(live, target)))
        moved = True
        if final:
            gate.rollouts.remove(rollout)
            log.info("rollout_completed", environment=env.name, kind=rollout["kind"], name=rollout["name"])
            message = f"{rollout['ident']}: rollout complete"
        else:
            rollout.update(index=index, step_started_at=now)
            log.info("rollout_step", environment=env.name, kind=rollout["kind"], name=rollout["name"], step=index + 1, steps=len(rollout["steps"]) + 1)
            message = f"{rollout['ident']}: step {index + 1} of {len(rollout['steps']) + 1}"
        if progress:
            progress(f"{env.name}: {message}")
        if not gate.rollouts:
            gate.until = time.time() + gate.bake
    if moved:
        _save(engine, env.name, gate)


def pending(engine: Engine, name: str) -> Gate | None:
    """The gate an environment is baking, if any (to resume after a restart)."""
    record = engine.store.environment(name)
    data = record.data.get(BAKE_KEY) if record else None
    return Gate(**data) if data else None


def content_digest(env: EnvironmentDesired) -> str:
    """What an environment's revision asks of AWS (RunbookRuns aside), to tell revisions apart."""
    return spec_hash({r.ident: r.spec for r in env.resources if r.kind != "RunbookRun"})


def mark_healthy(engine: Engine, env: EnvironmentDesired, revision: str) -> None:
    """The revision passed its gate: its applied state becomes the healthy one."""
    name = env.name
    engine.store.mark_healthy(name)
    record = engine.store.environment(name) or EnvironmentRecord(name)
    record.healthy_revision = revision
    entry = {"revision": revision, "digest": content_digest(env)}
    history = [h for h in record.data.get(HEALTHY_HISTORY, []) if h["revision"] != revision] + [entry]
    record.data = {k: v for k, v in record.data.items() if k != BAKE_KEY}
    record.data[HEALTHY_HISTORY] = history[-20:]
    if record.status == "baking":
        record.status = "synced"
    engine.store.put_environment(record)


def check(engine: Engine, ctx: Context, env: EnvironmentDesired, gate: Gate, progress: Any = None) -> str:
    """One re-check of a gate: ``baking``, ``healthy``, ``rolled_back`` or ``unhealthy`` (rollback off)."""
    fired = firing(ctx, gate.alarms, gate.started_at) if gate.alarms else []
    if not fired:
        advance(engine, ctx, env, gate, progress)
        if gate.rollouts or time.time() < gate.until:
            return "baking"
        mark_healthy(engine, env, gate.revision)
        log.info("bake_passed", environment=env.name, revision=gate.revision)
        return "healthy"
    reason = f"health check failed: {', '.join(fired)} went to ALARM during the bake"
    record = engine.store.environment(env.name) or EnvironmentRecord(env.name)
    record.data = {k: v for k, v in record.data.items() if k != BAKE_KEY}
    if env.spec.health.rollback == "off":
        record.status, record.message = "degraded", reason + " (rollback: off)"
        engine.store.put_environment(record)
        # A progressive delivery's own gate still holds: its traffic goes back.
        stepping = {r["ident"] for r in gate.rollouts}
        if stepping:
            rollback(engine, ctx, env, [c for c in gate.changed if f"{c['kind']}/{c['name']}" in stepping], [])
        log.error("health_check_failed", environment=env.name, revision=gate.revision, alarms=fired, rollback="off")
        metrics.RECONCILE_TOTAL.labels(env.name, "failed").inc()
        notify(ctx, env.spec, topic_arn(engine, env), f"lensops: {env.name} unhealthy after {gate.revision[:12]}", {"reason": reason, "rollback": "off"})
        return "unhealthy"
    log.error("health_check_failed", environment=env.name, revision=gate.revision, alarms=fired, rollback="auto")
    history = engine.store.start_revision(env.name, gate.revision, "rollback")
    done = rollback(engine, ctx, env, gate.changed, gate.pruned)
    put_back = ", ".join(f"{d['kind']}/{d['name']} {d['action']}" for d in done) or "nothing"
    record.status = "rolled_back"
    record.failed_revision = gate.revision
    record.applied_revision = gate.previous_healthy
    record.message = f"{reason}; put back: {put_back}"
    engine.store.put_environment(record)
    engine.store.finish_revision(history, "rolled_back", record.message, done)
    metrics.RECONCILE_TOTAL.labels(env.name, "rolled_back").inc()
    if gate.previous_healthy:
        metrics.set_applied_revision(env.name, gate.previous_healthy)
    notify(ctx, env.spec, topic_arn(engine, env), f"lensops: {env.name} rolled back {gate.revision[:12]}", {"reason": reason, "put back": put_back})
    return "rolled_back"


def held(engine: Engine, env: EnvironmentDesired) -> str:
    """Why ``env``'s revision must not be applied (it failed its health check), or ''."""
    record = engine.store.environment(env.name)
    if record and record.failed_revision and record.failed_revision == env.revision:
        return f"revision {env.revision[:12]} failed its health check and is held until a newer commit"
    return ""


def topic_arn(engine: Engine, env: EnvironmentDesired) -> str | None:
    """The ARN of the environment's notification topic (a ``ref:`` resolved from the state store)."""
    topic = env.spec.notifications.topic
    if topic and topic.startswith("ref:"):
        record = engine.store.resources(env.name).get(topic[4:].split(".")[0])
        return record.arn if record else None
    return topic
