"""``lensops iam-policy``: the least-privilege policy the manifests in scope need."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from controller.kinds import Registry
from controller.manifests.model import EnvironmentDesired
from runbooks import CATALOGUE as RUNBOOKS

_ALWAYS = ("sts:GetCallerIdentity",)


def policy_for(registry: Registry, environments: Iterable[EnvironmentDesired]) -> dict[str, Any]:
    """An IAM policy document with the actions each used kind's reconciler declares."""
    actions: set[str] = set(_ALWAYS)
    roles: set[str] = set()
    for env in environments:
        if env.spec.assumeRoleArn:
            roles.add(env.spec.assumeRoleArn)
        if env.spec.notifications.topic:
            actions.add("sns:Publish")
        if env.spec.health.alarms:
            actions.add("cloudwatch:DescribeAlarms")
        for run in env.runs:
            runbook = RUNBOOKS.get(str(run.spec.get("runbook")))
            if runbook is not None:
                actions.update(runbook.touches)
        for resource in env.resources:
            reconciler = registry.get(resource.kind)
            if reconciler is not None:
                actions.update(reconciler.iam_read)
                actions.update(reconciler.iam_write)
    statements: list[dict[str, Any]] = [{"Sid": "LensopsReconcile", "Effect": "Allow", "Action": sorted(actions), "Resource": "*"}]
    if roles:
        statements.append({"Sid": "LensopsAssumeRole", "Effect": "Allow", "Action": ["sts:AssumeRole"], "Resource": sorted(roles)})
    return {"Version": "2012-10-17", "Statement": statements}
