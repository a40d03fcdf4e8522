"""``lensops iam-policy``: the least-privilege policy the manifests in scope need."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from controller.kinds import Registry
from controller.manifests.model import EnvironmentDesired
from runbooks import CATALOGUE as RUNBOOKS

_ALWAYS = ("sts:GetCallerIdentity",)


def policy_for(registry: Registry, environments: Iterable[EnvironmentDesired]) -> dict[str, Any]:
    """An IAM policy document with the actions each used kind's reconciler declares (on every
    resource), and those it needs on resources the Environments' settings name (on those only)."""
    actions: set[str] = set(_ALWAYS)
    roles: set[str] = set()
    scoped: dict[str, set[str]] = {}
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
                for arn, on_arn in reconciler.iam_scoped(env.spec.model_dump(mode="json")).items():
                    scoped.setdefault(arn, set()).update(on_arn)
    statements: list[dict[str, Any]] = [{"Sid": "LensopsReconcile", "Effect": "Allow", "Action": sorted(actions), "Resource": "*"}]
    # Actions on resources the environments' settings name, granted on those only: one statement per set of actions.
    by_actions: dict[tuple[str, ...], list[str]] = {}
    for arn, granted in sorted(scoped.items()):
        by_actions.setdefault(tuple(sorted(granted)), []).append(arn)
    for number, (granted_actions, arns) in enumerate(sorted(by_actions.items()), start=1):
        statements.append({"Sid": f"LensopsScoped{number}", "Effect": "Allow", "Action": list(granted_actions), "Resource": arns})
    if roles:
        statements.append({"Sid": "LensopsAssumeRole", "Effect": "Allow", "Action": ["sts:AssumeRole"], "Resource": sorted(roles)})
    return {"Version": "2012-10-17", "Statement": statements}
