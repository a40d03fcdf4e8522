"""The ``dr-restore`` runbook: restore an RDS instance from a snapshot and point an SSM parameter at it.

Steps, each idempotent (see ``dr-restore.md`` for the operator's page):

1. ``pick-snapshot``: the snapshot named, or with ``snapshot: latest`` the
   newest *available* snapshot of the source (manual or automated, every
   page of DescribeDBSnapshots); also reads the source's network settings
   (subnet group, security groups, parameter group) when the source still
   exists, so the restored instance lands where the source was.
2. ``restore``: RestoreDBInstanceFromDBSnapshot into the target, tagged
   ``lensops:runbook-run=<env>/<name>``. A target that exists with this
   run's tag is reused (a retry after a crash); one that exists without
   it is someone else's, and the run fails rather than touch it. With
   ``recoveryPointArn`` instead of ``snapshot``: AWS Backup StartRestoreJob
   (idempotency token derived from the run), the tag added once it is done.
3. ``wait-available``: until the target is ``available`` (wait steps, never a sleep).
4. ``point-endpoint``: writes the target's endpoint address to the SSM parameter (overwrite).
5. ``verify-endpoint``: reads the parameter back; it must equal the instance's endpoint address.

The result notification (the framework's, with the snapshot, target,
address and parameter) closes the run.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from typing import Any, Mapping

from botocore.exceptions import ClientError

from controller.errors import error_code
from runbooks.base import Parameter, Runbook, RunContext, Step, StepResult, done, fail, wait

RUN_TAG = "lensops:runbook-run"
OWNER_ENV_TAG = "lensops:environment"
OWNER_ID_TAG = "lensops:id"

_TARGET_RE = re.compile(r"^[A-Za-z](?!.*--)[A-Za-z0-9-]{0,62}(?<!-)$")
_FAILED_STATES = {
    "failed",
    "incompatible-restore",
    "incompatible-parameters",
    "incompatible-network",
    "inaccessible-encryption-credentials",
    "restore-error",
    "storage-full",
    "deleting",
    "deleted",
    "stopped",
}
_POLL_SECONDS = 30.0


# --- AWS reads -----------------------------------------------------------------


def _instance(ctx: RunContext, identifier: str) -> dict[str, Any] | None:
    try:
        found = ctx.client("rds").describe_db_instances(DBInstanceIdentifier=identifier)["DBInstances"]
    except ClientError as exc:
        if error_code(exc) == "DBInstanceNotFound":
            return None
        raise
    return found[0] if found else None


def _tags(instance: Mapping[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in instance.get("TagList") or []}


def _source_settings(ctx: RunContext) -> dict[str, Any]:
    """Where the source lives (subnet group, security groups, parameter group), when it still exists."""
    source = _instance(ctx, ctx.parameters["dbInstanceIdentifier"])
    if source is None:
        return {}
    out: dict[str, Any] = {}
    group = (source.get("DBSubnetGroup") or {}).get("DBSubnetGroupName")
    if group:
        out["DBSubnetGroupName"] = group
    security = [g["VpcSecurityGroupId"] for g in source.get("VpcSecurityGroups") or [] if g.get("Status", "active") == "active"]
    if security:
        out["VpcSecurityGroupIds"] = security
    parameters = [g["DBParameterGroupName"] for g in source.get("DBParameterGroups") or []]
    if parameters and not parameters[0].startswith("default."):
        out["DBParameterGroupName"] = parameters[0]
    for key in ("MultiAZ", "PubliclyAccessible"):
        if isinstance(source.get(key), bool):
            out[key] = source[key]
    return out


def _tag_list(ctx: RunContext) -> list[dict[str, str]]:
    return [
        {"Key": RUN_TAG, "Value": ctx.run_id},
        {"Key": OWNER_ENV_TAG, "Value": ctx.environment},
        {"Key": OWNER_ID_TAG, "Value": f"RunbookRun/{ctx.name}"},
    ]


# --- the steps -------------------------------------------------------------------------


def pick_snapshot(ctx: RunContext) -> StepResult:
    """The snapshot (or recovery point) to restore, and the source's settings to restore into."""
    settings = _source_settings(ctx)
    arn = ctx.parameters.get("recoveryPointArn")
    if arn:
        return done({"recoveryPointArn": arn, "sourceSettings": settings})
    source = ctx.parameters["dbInstanceIdentifier"]
    wanted = ctx.parameters["snapshot"]
    rds = ctx.client("rds")
    if wanted == "latest":
        snapshots: list[dict[str, Any]] = []
        for page in rds.get_paginator("describe_db_snapshots").paginate(DBInstanceIdentifier=source):
            snapshots.extend(page.get("DBSnapshots") or [])
        available = [s for s in snapshots if s.get("Status") == "available" and s.get("SnapshotCreateTime")]
        if not available:
            return fail(f"no available snapshot of {source} (manual or automated; {len(snapshots)} snapshot(s) in other states)")
        chosen = max(available, key=lambda s: (s["SnapshotCreateTime"], s["DBSnapshotIdentifier"]))
    else:
        try:
            chosen = rds.describe_db_snapshots(DBSnapshotIdentifier=wanted)["DBSnapshots"][0]
        except ClientError as exc:
            if error_code(exc) == "DBSnapshotNotFound":
                return fail(f"snapshot {wanted} not found")
            raise
        if chosen.get("DBInstanceIdentifier") != source:
            return fail(f"snapshot {wanted} is of instance {chosen.get('DBInstanceIdentifier')}, not of {source}")
        status = chosen.get("Status", "")
        if status == "creating":
            return wait(60, f"snapshot {wanted} is still being created ({chosen.get('PercentProgress', 0)}%)")
        if status != "available":
            return fail(f"snapshot {wanted} is {status}, not available")
    created: Any = chosen.get("SnapshotCreateTime")
    return done(
        {
            "snapshot": chosen["DBSnapshotIdentifier"],
            "snapshotType": chosen.get("SnapshotType", ""),
            "snapshotCreateTime": created.isoformat() if isinstance(created, dt.datetime) else str(created or ""),
            "sourceSettings": settings,
        }
    )


def restore(ctx: RunContext) -> StepResult:
    """Restore into the target, or reuse the target this run already restored."""
    target = ctx.parameters["targetDbInstanceIdentifier"]
    existing = _instance(ctx, target)
    if existing is not None:
        owner = _tags(existing).get(RUN_TAG)
        if owner == ctx.run_id:
            return done({"target": target, "targetArn": existing.get("DBInstanceArn", ""), "reused": True})
        return fail(
            f"target {target} already exists and was not restored by this run "
            f"({RUN_TAG} is {owner or 'absent'}, expected {ctx.run_id}); lensops does not touch it: "
            "choose another targetDbInstanceIdentifier, or delete that instance, and commit a RunbookRun with a new name"
        )
    if ctx.outputs.get("recoveryPointArn"):
        return _start_restore_job(ctx, target)
    request: dict[str, Any] = {
        "DBInstanceIdentifier": target,
        "DBSnapshotIdentifier": ctx.outputs["snapshot"],
        "Tags": _tag_list(ctx),
        **ctx.outputs.get("sourceSettings", {}),
    }
    if ctx.parameters.get("dbInstanceClass"):
        request["DBInstanceClass"] = ctx.parameters["dbInstanceClass"]
    try:
        made = ctx.client("rds").restore_db_instance_from_db_snapshot(**request)["DBInstance"]
    except ClientError as exc:
        if error_code(exc) == "DBInstanceAlreadyExists":
            return wait(10, f"{target} appeared meanwhile; checking whose it is")
        raise
    return done({"target": target, "targetArn": made.get("DBInstanceArn", ""), "reused": False})


def _start_restore_job(ctx: RunContext, target: str) -> StepResult:
    """AWS Backup StartRestoreJob of an RDS recovery point (not exercised by the emulator: moto lacks it)."""
    role = ctx.parameters.get("restoreRoleArn")
    if not role:
        if not ctx.aws.account:
            return fail("restoreRoleArn is needed: the account of the environment is not known")
        role = f"arn:aws:iam::{ctx.aws.account}:role/service-role/AWSBackupDefaultServiceRole"
    settings = ctx.outputs.get("sourceSettings", {})
    metadata = {"DBInstanceIdentifier": target}
    if ctx.parameters.get("dbInstanceClass"):
        metadata["DBInstanceClass"] = ctx.parameters["dbInstanceClass"]
    if settings.get("DBSubnetGroupName"):
        metadata["DBSubnetGroupName"] = settings["DBSubnetGroupName"]
    if settings.get("VpcSecurityGroupIds"):
        metadata["VpcSecurityGroupIds"] = json.dumps(settings["VpcSecurityGroupIds"])
    job = ctx.client("backup").start_restore_job(
        RecoveryPointArn=ctx.outputs["recoveryPointArn"],
        Metadata=metadata,
        IamRoleArn=role,
        IdempotencyToken=str(uuid.uuid5(uuid.NAMESPACE_URL, f"lensops:runbook-run:{ctx.run_id}")),
        ResourceType="RDS",
    )
    return done({"target": target, "restoreJobId": job["RestoreJobId"], "reused": False})


def wait_available(ctx: RunContext) -> StepResult:
    """Until the target is ``available``; after a restore job, until the job is done first."""
    target = ctx.outputs["target"]
    job_id = ctx.outputs.get("restoreJobId")
    if job_id:
        job = ctx.client("backup").describe_restore_job(RestoreJobId=job_id)
        status = job.get("Status", "")
        if status in ("ABORTED", "FAILED"):
            return fail(f"restore job {job_id} {status.lower()}: {job.get('StatusMessage', '')}".rstrip(": "))
        if status != "COMPLETED":
            return wait(60, f"restore job {job_id} is {status.lower() or 'pending'} ({job.get('PercentDone', '0')}%)")
        if job.get("CreatedResourceArn"):
            ctx.client("rds").add_tags_to_resource(ResourceName=job["CreatedResourceArn"], Tags=_tag_list(ctx))
    instance = _instance(ctx, target)
    if instance is None:
        return wait(15, f"{target} is not visible yet")
    status = instance.get("DBInstanceStatus", "")
    if status in _FAILED_STATES:
        return fail(f"{target} is {status}")
    endpoint = instance.get("Endpoint") or {}
    if status != "available" or not endpoint.get("Address"):
        return wait(_POLL_SECONDS, f"{target} is {status or 'not ready'}")
    return done({"endpointAddress": endpoint["Address"], "endpointPort": endpoint.get("Port"), "instanceClass": instance.get("DBInstanceClass", "")})


def _parameter(ctx: RunContext, name: str, decrypt: bool) -> dict[str, Any] | None:
    try:
        return dict(ctx.client("ssm").get_parameter(Name=name, WithDecryption=decrypt)["Parameter"])
    except ClientError as exc:
        if error_code(exc) == "ParameterNotFound":
            return None
        raise


def point_endpoint(ctx: RunContext) -> StepResult:
    """Overwrite the SSM parameter with the target's endpoint address (its type kept when it exists)."""
    name = ctx.parameters.get("endpointParameter")
    if not name:
        return done({"endpointParameter": ""})
    address = ctx.outputs["endpointAddress"]
    previous = _parameter(ctx, name, decrypt=False)
    request: dict[str, Any] = {"Name": name, "Value": address, "Overwrite": True}
    if previous is None:
        request["Type"] = "String"
    ctx.client("ssm").put_parameter(**request)
    out: dict[str, Any] = {"endpointParameter": name}
    if previous is not None and previous.get("Value") != address:
        # That it changed and which version it was, never what it held: status and notifications
        # are read by more people than the parameter is (its history is in SSM, under the caller's IAM).
        out["previousVersion"] = previous.get("Version", 0)
    return done(out)


def verify_endpoint(ctx: RunContext) -> StepResult:
    """Read the parameter back: it must equal the endpoint address the instance has now."""
    target = ctx.outputs["target"]
    instance = _instance(ctx, target)
    address = ((instance or {}).get("Endpoint") or {}).get("Address")
    if not address:
        return fail(f"{target} has no endpoint address any more")
    name = ctx.parameters.get("endpointParameter")
    if not name:
        return done({"verified": f"{target} is available at its endpoint (no endpointParameter to check)"})
    found = _parameter(ctx, name, decrypt=True)
    value = (found or {}).get("Value")
    if value == address:
        return done({"verified": f"{name} = {address}"})
    if ctx.attempt < 3:
        return wait(5, f"{name} does not show {address} yet")
    return fail(f"{name} holds {value!r}, not the endpoint address of {target} ({address})")


# --- the runbook ------------------------------------------------------------------------


def _check(parameters: Mapping[str, Any]) -> list[str]:
    out = [f"parameter {k} must be a string" for k, v in sorted(parameters.items()) if not isinstance(v, str) or not v.strip()]
    if out:
        return out
    has_snapshot, has_point = "snapshot" in parameters, "recoveryPointArn" in parameters
    if has_snapshot == has_point:
        out.append("dr-restore needs exactly one of snapshot ('latest' or a snapshot id) and recoveryPointArn")
    if "restoreRoleArn" in parameters and not has_point:
        out.append("restoreRoleArn goes with recoveryPointArn only")
    target = parameters["targetDbInstanceIdentifier"]
    if not _TARGET_RE.match(target):
        out.append(f"targetDbInstanceIdentifier {target!r} is not an RDS instance identifier (a letter, then letters, digits, single hyphens; 63 at most)")
    if target.lower() == parameters["dbInstanceIdentifier"].lower():
        out.append("targetDbInstanceIdentifier must differ from dbInstanceIdentifier: dr-restore never overwrites the source")
    return out


RUNBOOK = Runbook(
    name="dr-restore",
    summary="Restore an RDS instance from a snapshot and point an SSM parameter at the new endpoint.",
    parameters=(
        Parameter("dbInstanceIdentifier", "the source RDS instance", required=True),
        Parameter("snapshot", "'latest' (newest available snapshot of the source, manual or automated) or a snapshot id"),
        Parameter("targetDbInstanceIdentifier", "the instance to restore into (must not exist, or be this run's)", required=True),
        Parameter("dbInstanceClass", "instance class of the restored instance (default: the snapshot's)"),
        Parameter("endpointParameter", "SSM parameter name to point at the new endpoint address"),
        Parameter("recoveryPointArn", "restore from an AWS Backup recovery point instead of a snapshot"),
        Parameter("restoreRoleArn", "with recoveryPointArn: the role AWS Backup restores with (default: AWSBackupDefaultServiceRole)"),
    ),
    steps=(
        Step(
            "pick-snapshot",
            pick_snapshot,
            "choose the snapshot (latest available, or the one named) and read the source's subnet group, security groups and parameter group",
            touches=("rds:DescribeDBSnapshots", "rds:DescribeDBInstances"),
        ),
        Step(
            "restore",
            restore,
            f"restore the snapshot into the target, tagged {RUN_TAG}=<env>/<name>; reuse a target with this run's tag, refuse any other",
            # Tags on create need rds:AddTagsToResource; a snapshot under a customer managed key needs
            # kms:CreateGrant and kms:DescribeKey on it (RDS acts as the caller); the recovery point's
            # restore passes its role to AWS Backup.
            touches=(
                "rds:DescribeDBInstances",
                "rds:RestoreDBInstanceFromDBSnapshot",
                "rds:AddTagsToResource",
                "kms:CreateGrant",
                "kms:DescribeKey",
                "backup:StartRestoreJob",
                "iam:PassRole",
            ),
        ),
        Step(
            "wait-available",
            wait_available,
            "re-check until the target is available (and, from a recovery point, the restore job completed)",
            touches=("rds:DescribeDBInstances", "backup:DescribeRestoreJob", "rds:AddTagsToResource"),
            timeout=3 * 60 * 60.0,
        ),
        Step(
            "point-endpoint",
            point_endpoint,
            "overwrite the SSM parameter with the target's endpoint address",
            touches=("ssm:GetParameter", "ssm:PutParameter"),
        ),
        Step(
            "verify-endpoint",
            verify_endpoint,
            "read the parameter back and check it equals the target's endpoint address",
            touches=("ssm:GetParameter", "rds:DescribeDBInstances"),
        ),
    ),
    page="dr-restore.md",
    timeout=4 * 60 * 60.0,
    report=("snapshot", "recoveryPointArn", "target", "endpointAddress", "endpointParameter", "previousVersion"),
    check=_check,
)
