"""``lensops status`` and ``lensops history``: read from the state store, beside a running daemon."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

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
        counts: dict[str, int] = {}
        for r in resources.values():
            counts[r.sync] = counts.get(r.sync, 0) + 1
        out["environments"][record.environment] = {
            "appliedRevision": record.applied_revision,
            "healthyRevision": record.healthy_revision,
            "failedRevision": record.failed_revision,
            "status": record.status,
            "message": record.message,
            "lastSync": _when(record.last_sync),
            "lastSyncAgeSeconds": round(time.time() - record.last_sync, 1) if record.last_sync else None,
            "lastPass": record.data.get("last_pass", {}),
            "hold": record.data.get("hold"),
            "counts": counts,
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


def status_text(doc: dict[str, Any]) -> str:
    if not doc["environments"]:
        return "No environment has been reconciled yet."
    lines = []
    for name, env in doc["environments"].items():
        counts = ", ".join(f"{v} {k}" for k, v in sorted(env["counts"].items())) or "no resources"
        lines.append(f"{name}: {env['status']}  revision {env['appliedRevision'][:12] or '-'}  last sync {env['lastSync']}  ({counts})")
        if env["message"]:
            lines.append(f"  last error: {env['message']}")
        for r in env["resources"]:
            if r["sync"] != "synced" or r["health"] not in ("healthy",):
                lines.append(f"  {r['kind']}/{r['name']}: {r['sync']}, {r['health']} {r['message']}".rstrip())
        for run in env.get("runbooks", []):
            lines.append("  " + _run_line(run))
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
    for env in envs or [None]:
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
    lines = [f"{'STARTED':<21} {'ENVIRONMENT':<12} {'REVISION':<13} {'RESULT':<12} CHANGES"]
    for r in doc["revisions"]:
        lines.append(f"{r['startedAt']:<21} {r['environment']:<12} {r['revision'][:12]:<13} {r['result']:<12} {len(r['changes'])}")
    return "\n".join(lines)
