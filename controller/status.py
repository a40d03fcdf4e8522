"""``lensops status`` and ``lensops history``: read from the state store, beside a running daemon.

Where it stands in the house: at the reporting end, read-only; the CLI prints
these documents, the daemon serves ``status_document`` as ``/api/v1/status``.
An environment's status is what its passes recorded, except that a revision
the daemon refused (invalid manifests) makes it ``invalid`` until a newer
commit of the environment loads: the applied revision stays live and is still
reconciled, and both are shown.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from controller.engine import BAKE_KEY, LAST_DRIFT_KEY, LAST_PASS_KEY, REFUSED_KEY
from controller.manifests.model import ANNOTATION_SUSPEND
from controller.plan import short_revision
from controller.policy import HOLD_KEY
from controller.state import StateStore
from runbooks.executor import runbook_runs


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if ts else "-"


REMOVED = "removed"
"""The status of an environment whose folder left Git (the daemon retired it)."""
REFUSAL_LINES = 20
"""Problems of a refused revision in the text (the JSON has them all)."""
HISTORY_MESSAGE = 100
"""Characters of a message in the history table (the JSON has it whole)."""


def still_drifted(last_pass: dict[str, Any]) -> list[str]:
    """Kind/name of the resources whose drift the last pass found and did not put back (a plan, a
    sync window, ``sync.selfHeal`` off, a suspended resource, a failed write)."""
    drifted = last_pass.get("drifted", [])
    reverted = last_pass.get("reverted", drifted if last_pass.get("executed") and last_pass.get("result") == "success" else [])
    return [ident for ident in drifted if ident not in reverted]


def refusal(record_data: dict[str, Any]) -> dict[str, Any] | None:
    """The refused revision of an environment's record, as ``status`` shows it, or None."""
    refused = record_data.get(REFUSED_KEY)
    if not refused:
        return None
    at = refused.get("at")  # recorded by lensops since it keeps refusals past the next pass
    return {"revision": refused.get("revision", ""), "refusedAt": _when(at) if at else None, "problems": list(refused.get("problems", []))}


def status_document(store: StateStore, envs: list[str] | None = None) -> dict[str, Any]:
    """Per environment: the applied revision, the last pass, and each resource's sync and health;
    a refused revision (its commit and each problem as ``path:line: Kind/name: message``)."""
    out: dict[str, Any] = {"environments": {}}
    for record in store.environments():
        if envs and record.environment not in envs:
            continue
        resources = store.resources(record.environment)
        last_pass = record.data.get(LAST_PASS_KEY, {})
        refused = refusal(record.data) if record.status != REMOVED else None
        counts = {
            "total": len(resources),
            "synced": sum(1 for r in resources.values() if r.sync == "synced"),
            "drifted": len(still_drifted(last_pass)),
            "failed": sum(1 for r in resources.values() if r.health == "degraded"),
            "suspended": sum(1 for r in resources.values() if r.annotations.get(ANNOTATION_SUSPEND, "").lower() == "true"),
            "orphans": len(last_pass.get("orphans", [])),
        }
        gate = record.data.get(BAKE_KEY) or {}
        entry: dict[str, Any] = {
            "appliedRevision": record.applied_revision,
            "healthyRevision": record.healthy_revision,
            "failedRevision": record.failed_revision,
            "status": "invalid" if refused else record.status,
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
            "refused": refused,
            "lastDrift": record.data.get(LAST_DRIFT_KEY),
        }
        if refused:
            entry["invalid"] = refused["problems"]
        out["environments"][record.environment] = entry
    return out


def check_failures(doc: dict[str, Any]) -> list[str]:
    """``lensops status --check``: one line per environment that needs a look (failed, invalid,
    drifted, held after a failed bake); a sync window, a bake in progress or the rollback
    runbook's hold are not failures."""
    out = []
    for name, env in doc["environments"].items():
        status = env.get("status", "")
        if status == REMOVED:
            continue
        why = []
        if env.get("refused") or status == "invalid":
            refused = (env.get("refused") or {}).get("revision", "")
            why.append(f"invalid: revision {refused[:12]} refused" if refused else "invalid")
        failed = env.get("counts", {}).get("failed", 0)
        if status in ("failed", "degraded") or failed or env.get("lastPass", {}).get("result") == "failed":
            why.append(f"failed ({failed} resource{'s' if failed != 1 else ''})" if failed else "failed")
        if env.get("failedRevision") or status in ("rolling_back", "rolled_back"):
            held = env.get("failedRevision") or ""
            why.append(f"held after a failed bake of {held[:12]}" if held else "held after a failed bake")
        if drifted := still_drifted(env.get("lastPass", {})):
            why.append("drifted: " + ", ".join(drifted[:5]) + (f" and {len(drifted) - 5} more" if len(drifted) > 5 else ""))
        if why:
            out.append(f"{name}: {'; '.join(why)}")
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
        details = _details(env)
        if details:
            lines.append(f"{name}:")
            lines.extend(f"  {d}" for d in details)
    return "\n".join(lines)


def _details(env: dict[str, Any]) -> list[str]:
    """What needs a look in one environment, one line each (a refusal's problems indented below it).

    Each error is said once: a resource that failed has its ``failed:`` line (with the
    freshest text, the last pass's), and the environment's message keeps only the rest."""
    details = []
    if refused := env.get("refused"):
        applied = short_revision(env.get("appliedRevision") or "")
        stays = f"{applied} stays applied and reconciled" if applied else "nothing applied yet"
        when = f" at {refused['refusedAt']}" if refused.get("refusedAt") else ""
        details.append(f"refused {short_revision(refused['revision'])}{when} ({stays}):")
        problems = refused.get("problems", [])
        details.extend(f"  {p}" for p in problems[:REFUSAL_LINES])
        if len(problems) > REFUSAL_LINES:
            details.append(f"  ... and {len(problems) - REFUSAL_LINES} more (lensops status --output json)")
    errors: list[str] = env.get("lastPass", {}).get("errors", [])
    failed = {f"{r['kind']}/{r['name']}": r["message"] for r in env.get("resources", []) if r["health"] == "degraded"}

    def about_failed(error: str) -> str:
        ident, _, message = error.partition(": ")
        return message if ident in failed else ""

    for error in errors:
        if fresher := about_failed(error):
            failed[error.partition(": ")[0]] = fresher
    message = env.get("message") or ""
    parts = errors[:5] if message and message == "; ".join(errors[:5]) else [message] if message else []
    rest = [p for p in parts if not about_failed(p) and p not in env.get("invalid", [])]
    if rest:
        # a removed or decommissioned environment's message says what happened to it, not an error
        label = "" if env.get("status") in (REMOVED, "decommissioned") else "last error: "
        details.append(label + "; ".join(rest))
    if env.get("hold"):
        details.append(f"held on {env['hold']['revision'][:12]} until a commit newer than {env['hold']['after'][:12]}")
    if env.get("bake"):
        details.append(f"baking {env['bake']['revision'][:12]} until {env['bake']['until']}, watching {', '.join(env['bake']['alarms']) or 'no alarm'}")
    for rollout in env.get("rollouts", []):
        details.append(f"rollout {rollout['resource']}: step {rollout['step']} of {rollout['steps']} since {rollout['stepStartedAt']}")
    last_drift = env.get("lastDrift") or {}
    fields = {d["resource"]: d["fields"] for d in last_drift.get("resources", [])}
    drifted = still_drifted(env.get("lastPass", {}))
    for ident in drifted:
        details.append(f"drifted: {ident}" + (f" ({', '.join(fields[ident])})" if fields.get(ident) else ""))
    put_back = [d for d in last_drift.get("resources", []) if d["reverted"] and d["resource"] not in drifted]
    if put_back:
        shown = ", ".join(f"{d['resource']} ({', '.join(d['fields'])})" for d in put_back[:5])
        details.append(f"drift put back at {_when(last_drift['at'])}: {shown}" + (f" and {len(put_back) - 5} more" if len(put_back) > 5 else ""))
    for orphan in env.get("lastPass", {}).get("orphans", []):
        details.append(f"orphan: {orphan}")
    for ident, message in failed.items():
        details.append(f"failed: {ident}: {message}".rstrip(": "))
    details.extend(_run_line(run) for run in env.get("runbooks", []))
    return details


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


def clip(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters, cut at a word boundary and marked with an ellipsis."""
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    cut = text[: width - 1]
    space = cut.rfind(" ")
    if space > width // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:") + "…"


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
    lines = [f"{'STARTED':<21} {'ENVIRONMENT':<12} {'REVISION':<13} {'TRIGGER':<12} {'RESULT':<12} {'CHANGES':<8} MESSAGE"]
    for r in doc["revisions"]:
        put_back = " (put back)" if r["result"] == "rolled_back" else ""
        lines.append(
            f"{r['startedAt']:<21} {r['environment']:<12} {short_revision(r['revision']):<13} {r['trigger'][:12]:<12} {r['result']:<12} "
            f"{str(len(r['changes'])) + put_back:<8} {clip(r['message'], HISTORY_MESSAGE)}".rstrip()
        )
    return "\n".join(lines)
