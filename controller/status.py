"""``lensops status`` and ``lensops history``: read from the state store, beside a running daemon."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from controller.engine import BAKE_KEY, LAST_PASS_KEY
from controller.manifests.model import ANNOTATION_SUSPEND
from controller.plan import short_revision
from controller.policy import HOLD_KEY
from controller.state import StateStore
from runbooks.executor import runbook_runs


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if ts else "-"


def status_document(store: StateStore, envs: list[str] | None = None) -> dict[str, Any]:
    """Per environment: the applied revision, the last pass, and each resource's sync and health."""
    out: dict[str, Any] = {"environments": {}}
    for record in store.environments():
        if envs and record.environment not in envs:
            continue
        resources = store.resources(record.environment)
        last_pass = record.data.get(LAST_PASS_KEY, {})
        counts = {
            "total": len(resources),
            "synced": sum(1 for r in resources.values() if r.sync == "synced"),
            "drifted": len(last_pass.get("drifted", [])),
            "failed": sum(1 for r in resources.values() if r.health == "degraded"),
            "suspended": sum(1 for r in resources.values() if r.annotations.get(ANNOTATION_SUSPEND, "").lower() == "true"),
            "orphans": len(last_pass.get("orphans", [])),
        }
        gate = record.data.get(BAKE_KEY) or {}
        out["environments"][record.environment] = {
            "appliedRevision": record.applied_revision,
            "healthyRevision": record.healthy_revision,
            "failedRevision": record.failed_revision,
            "status": record.status,
            "message": record.message,
            "lastSync": _when(record.last_sync),
            "lastSyncAgeSeconds": round(time.time() - record.last_sync, 1) if record.last_sync else None,
            "lastPass": last_pass,
            "hold": record.data.get(HOLD_KEY),
            "counts": counts,
            "bake": {"revision": gate["revision"], "until": _when(gate["until"]), "alarms": gate["alarms"]} if gate else None,
            "rollouts": [
                {"resource": r["ident"], "step": r["index"] + 1, "steps": len(r["steps"]) + 1, "stepStartedAt": _when(r["step_started_at"])}
                for r in gate.get("rollouts", [])
            ],
            "resources": [
                {
                    "kind": r.kind,
                    "name": r.name,
                    "physical": r.physical,
                    "sync": r.sync,
                    "health": r.health,
                    "revision": r.revision,
                    "message": r.message,
                }
                for r in sorted(resources.values(), key=lambda r: r.ident)
            ],
            "runbooks": runbook_runs(store, record.environment),
        }
    return out


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def status_text(doc: dict[str, Any]) -> str:
    """A table per environment, then what needs a look: errors, drift, rollouts, runbooks."""
    if not doc["environments"]:
        return "No environment has been reconciled yet."
    header = ("ENVIRONMENT", "STATUS", "REVISION", "AGE", "RESOURCES", "SYNCED", "DRIFTED", "FAILED", "SUSPENDED", "ORPHANS")
    rows = [header]
    for name, env in doc["environments"].items():
        c = env.get("counts", {})
        counts = (c.get("total", 0), c.get("synced", 0), c.get("drifted", 0), c.get("failed", 0), c.get("suspended", 0), c.get("orphans", 0))
        rows.append((name, env.get("status", "-"), short_revision(env.get("appliedRevision") or "-"), _age(env.get("lastSyncAgeSeconds")), *map(str, counts)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    for name, env in doc["environments"].items():
        details = []
        if env.get("message"):
            details.append(f"last error: {env['message']}")
        for problem in env.get("invalid", []) or []:
            details.append(f"refused: {problem}")
        if env.get("hold"):
            details.append(f"held on {env['hold']['revision'][:12]} until a commit newer than {env['hold']['after'][:12]}")
        if env.get("bake"):
            details.append(f"baking {env['bake']['revision'][:12]} until {env['bake']['until']}, watching {', '.join(env['bake']['alarms']) or 'no alarm'}")
        for rollout in env.get("rollouts", []):
            details.append(f"rollout {rollout['resource']}: step {rollout['step']} of {rollout['steps']} since {rollout['stepStartedAt']}")
        for ident in env.get("lastPass", {}).get("drifted", []):
            details.append(f"drifted: {ident}")
        for orphan in env.get("lastPass", {}).get("orphans", []):
            details.append(f"orphan: {orphan}")
        for r in env.get("resources", []):
            if r["health"] == "degraded":
                details.append(f"failed: {r['kind']}/{r['name']}: {r['message']}".rstrip(": "))
        details.extend(_run_line(run) for run in env.get("runbooks", []))
        if details:
            lines.append(f"{name}:")
            lines.extend(f"  {d}" for d in details)
    return "\n".join(lines)


def _run_line(run: dict[str, Any]) -> str:
    """One line per runbook run: what, where it stands, and why when it is stuck or failed."""
    steps = f"{run['stepsDone']}/{len(run['steps'])} steps"
    line = f"RunbookRun/{run['name']} ({run['runbook']}): {run['state']}, {steps}"
    if run["state"] == "running":
        current = next((s for s in run["steps"] if s["name"] == run["currentStep"]), None)
        if current:
            line += f", {current['name']} {current['state']}" + (f": {current['message']}" if current["message"] else "")
        if run["nextCheck"]:
            line += f" (next check {run['nextCheck']})"
    else:
        line += f", finished {run['finishedAt']}" + (f": {run['message']}" if run["message"] else "")
    if run.get("ignoredChange"):
        line += f"; note: {run['ignoredChange']['message']}"
    return line


def history_document(store: StateStore, envs: list[str] | None, limit: int) -> dict[str, Any]:
    rows = []
    for env in envs or (None,):
        rows.extend(store.history(env, limit))
    rows.sort(key=lambda r: r.id, reverse=True)
    return {
        "revisions": [
            {
                "environment": r.environment,
                "revision": r.revision,
                "startedAt": _when(r.started_at),
                "finishedAt": _when(r.finished_at),
                "result": r.result,
                "message": r.message,
                "trigger": r.trigger,
                "changes": r.changes,
            }
            for r in rows[:limit]
        ]
    }


def history_text(doc: dict[str, Any]) -> str:
    if not doc["revisions"]:
        return "No history yet."
    lines = [f"{'STARTED':<21} {'ENVIRONMENT':<12} {'REVISION':<13} {'TRIGGER':<9} {'RESULT':<12} {'CHANGES':<8} MESSAGE"]
    for r in doc["revisions"]:
        put_back = " (put back)" if r["result"] == "rolled_back" else ""
        lines.append(
            f"{r['startedAt']:<21} {r['environment']:<12} {short_revision(r['revision']):<13} {r['trigger'][:9]:<9} {r['result']:<12} "
            f"{str(len(r['changes'])) + put_back:<8} {r['message'][:100]}".rstrip()
        )
    return "\n".join(lines)
