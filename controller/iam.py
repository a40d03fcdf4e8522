"""``lensops iam-policy``: the least-privilege policy the manifests in scope need."""

from __future__ import annotations

from typing import Any, Iterable

from controller.manifests.model import EnvironmentDesired

_ALWAYS = ("sts:GetCallerIdentity",)


def policy_for(environments: Iterable[EnvironmentDesired]) -> dict[str, Any]:
    """An IAM policy document with the actions each used kind's reconciler declares."""
    from reconcilers.base import KINDS
    from runbooks import CATALOGUE as RUNBOOKS

    actions: set[str] = set(_ALWAYS)
    roles: set[str] = set()
    for env in environments:
        if env.spec.assumeRoleArn:
            roles.add(env.spec.assumeRoleArn)
        if env.spec.notifications.topic:
            actions.add("sns:Publish")
        if env.spec.health.alarms:
            actions.add("cloudwatch:DescribeAlarms")
        for resource in env.resources:
            if resource.kind == "RunbookRun":
                runbook = RUNBOOKS.get(str(resource.spec.get("runbook")))
                if runbook is not None:
                    actions.update(runbook.touches)
                continue
            info = KINDS.get(resource.kind)
            if info and info.reconciler:
                actions.update(info.reconciler.iam_read)
                actions.update(info.reconciler.iam_write)
    statements: list[dict[str, Any]] = [{"Sid": "LensopsReconcile", "Effect": "Allow", "Action": sorted(actions), "Resource": "*"}]
    if roles:
        statements.append({"Sid": "LensopsAssumeRole", "Effect": "Allow", "Action": ["sts:AssumeRole"], "Resource": sorted(roles)})
    return {"Version": "2012-10-17", "Statement": statements}
