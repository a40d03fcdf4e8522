"""Putting back what a revision changed: every resource to its last healthy spec.

Created resources are deleted, updated ones restored, deleted ones recreated
from the recorded spec. Each resource is counted in
``lensops_rollbacks_total`` and logged; a failure to put one back is reported
and does not stop the others.
"""

from __future__ import annotations

from typing import Any

from controller import logs, metrics
from controller.diff import diff
from controller.engine import Engine, desired_from_record, spec_hash
from controller.errors import classify
from controller.manifests.model import EnvironmentDesired
from controller.state import ResourceRecord
from reconcilers.base import KINDS, Context

log = logs.get("lensops.rollback")


def rollback(engine: Engine, ctx: Context, env: EnvironmentDesired, changed: list[dict[str, Any]], pruned: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Put back every resource in ``changed`` (apply entries) and ``pruned`` (records); returns what was done."""
    records = engine.store.resources(env.name)
    pruned_by_ident = {f"{p['kind']}/{p['name']}": p for p in pruned}
    done: list[dict[str, Any]] = []
    for entry in reversed(changed):
        ident = f"{entry['kind']}/{entry['name']}"
        info = KINDS.get(entry["kind"])
        if info is None or info.reconciler is None:
            continue
        reconciler = info.reconciler(ctx)
        try:
            if entry["action"] == "delete":
                data = pruned_by_ident.get(ident)
                if not data or not data.get("healthy_desired") or data.get("healthy_spec") is None:
                    raise ValueError("no healthy spec recorded to recreate it from")
                desired = desired_from_record(entry["kind"], entry["name"], data["healthy_desired"])
                live = reconciler.create(desired, data["healthy_spec"])
                record = ResourceRecord(**{
                    **data, "spec": data["healthy_spec"], "spec_hash": spec_hash(data["healthy_spec"]),
                    "desired": data["healthy_desired"], "arn": live.arn or data.get("arn", ""),
                })
                engine.store.put_resource(record)
                what = "recreated"
            else:
                record = records.get(ident)
                if record is None:
                    continue
                live_all = reconciler.observe([record.physical])
                live = live_all.get(record.physical)
                if entry["action"] == "create" or record.healthy_spec is None or record.healthy_desired is None:
                    if live is not None:
                        reconciler.delete(live)
                    engine.store.delete_resource(env.name, record.kind, record.name)
                    what = "deleted"
                else:
                    desired = desired_from_record(record.kind, record.name, record.healthy_desired)
                    if live is None:
                        reconciler.create(desired, record.healthy_spec)
                    else:
                        changes = diff(record.healthy_spec, reconciler.compare_view(live, record.healthy_spec))
                        if changes:
                            reconciler.update(desired, record.healthy_spec, live, changes)
                    record.spec, record.desired = record.healthy_spec, record.healthy_desired
                    record.spec_hash = spec_hash(record.spec)  # the drift baseline is the restored spec
                    record.revision = "rollback"
                    engine.store.put_resource(record)
                    what = "restored"
            metrics.ROLLBACKS.labels(env.name, entry["kind"]).inc()
            log.warning("resource_rolled_back", environment=env.name, kind=entry["kind"], name=entry["name"], action=what)
            done.append({"kind": entry["kind"], "name": entry["name"], "action": what})
        except Exception as exc:  # noqa: BLE001 - one resource failing must not stop the others
            error = classify(exc)
            log.error("rollback_failed", environment=env.name, kind=entry["kind"], name=entry["name"], error=str(error))
            done.append({"kind": entry["kind"], "name": entry["name"], "action": "failed", "error": str(error)})
    return done
